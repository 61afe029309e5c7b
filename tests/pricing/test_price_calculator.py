"""Costs computed by hand for each pricing rule: tiers, windows, dates, caches, thinking, discounts, FX."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing.book import PriceBook
from pricing.calculator import Tokens, discount_factor, price_usage
from tests.pricing.helpers import utc

D = Decimal

BOOK = PriceBook.loads(
    """
fx:
  - {from: CNY, to: USD, rate: "0.1370", effective_from: 2025-01-01}
  - {from: CNY, to: USD, rate: "0.1395", effective_from: 2025-07-01}
prices:
  - provider: dashscope
    model: qwen-plus
    aliases: [qwen-plus-latest]
    currency: CNY
    effective_from: 2025-08-19
    input: 0.8
    cached_input: 0.16
    output: 2
    output_thinking: 8
    tiers:
      - {input_tokens_lte: 128000, input: 0.8, cached_input: 0.16, output: 2, output_thinking: 8}
      - {input_tokens_gt: 128000, input_tokens_lte: 256000, input: 2.4, cached_input: 0.48, output: 20,
         output_thinking: 24}
  - provider: deepseek
    model: deepseek-chat
    currency: CNY
    effective_from: 2025-02-26T16:30:00Z
    input: 2
    cached_input: 0.5
    output: 8
    time_of_day:
      - {window_utc: "16:30-00:30", input: 1, cached_input: 0.25, output: 4}
  - provider: deepseek
    model: deepseek-chat
    currency: CNY
    effective_from: 2024-12-26
    effective_to: 2025-02-08T16:00:00Z
    input: 1
    cached_input: 0.1
    output: 2
  - provider: deepseek
    model: deepseek-chat
    currency: CNY
    effective_from: 2024-09-06
    input: 1.5
    cached_input: 0.1
    output: 3
  - provider: deepseek
    model: deepseek-chat
    currency: CNY
    effective_from: 2025-02-08T16:00:00Z
    input: 2
    cached_input: 0.5
    output: 8
  - provider: anthropic
    model: claude-sonnet-4-5-20250929
    aliases: [claude-sonnet-4-5]
    currency: USD
    effective_from: 2025-09-29
    input: 3
    cached_input: 0.3
    cache_write_5m: 3.75
    cache_write_1h: 6
    output: 15
  - provider: openai
    model: o3
    currency: USD
    effective_from: 2025-06-10
    input: 2
    cached_input: 0.5
    output: 8
    reasoning: 10
    per_request: 0.01
    service_tiers:
      priority: {input: 3.5, cached_input: 0.875, output: 14}
    batch: {input: 1, output: 4}
  - {provider: hunyuan, model: hunyuan-pro, currency: CNY, effective_from: 2025-01-01, input: 2, output: 8}
  - provider: hunyuan
    model: hunyuan-lite
    currency: CNY
    effective_from: 2024-12-18
    input: 0
    output: 0
  - provider: dashscope
    model: qwen3-30b-a3b
    currency: CNY
    effective_from: 2025-07-13
    input: 0.75
    output_thinking: 7.5
"""
)


def price(provider: str, model: str, at: str, tokens: Tokens, **kwargs: object) -> dict[str, object]:
    entry = BOOK.entry_for(provider, model, utc(at))
    priced = price_usage(entry, tokens, at=utc(at), book=BOOK, **kwargs)  # type: ignore[arg-type]
    return {
        "status": priced.pricing_status,
        "input": priced.input_cost,
        "cached": priced.cached_input_cost,
        "write": priced.cache_write_cost,
        "output": priced.output_cost,
        "total": priced.total_cost,
        "reporting": priced.cost_reporting,
        "price_id": priced.price_id,
    }


@pytest.mark.parametrize(
    ("input_tokens", "input_cost", "output_cost"),
    [
        (128000, D("0.1024"), D("0.002")),  # 128000 × 0.8 / 1M; 1000 × 2 / 1M: the lower tier, bound inclusive
        (128001, D("0.3072024"), D("0.02")),  # 128001 × 2.4 / 1M; 1000 × 20 / 1M: the whole request moves up
        (300000, D("0.72"), D("0.02")),  # past the last band's bound: priced as that band, not the base prices
    ],
)
def test_tier_boundary_is_inclusive_and_bills_the_whole_request(
    input_tokens: int, input_cost: Decimal, output_cost: Decimal
) -> None:
    got = price("dashscope", "qwen-plus", "2025-09-01", Tokens(input_tokens=input_tokens, output_tokens=1000))
    assert got["input"] == input_cost
    assert got["output"] == output_cost
    assert got["total"] == input_cost + output_cost


@pytest.mark.parametrize(
    ("at", "input_cost"),
    [
        ("2025-03-01T16:29:59", D("0.002")),  # peak: 1000 × 2 / 1M
        ("2025-03-01T16:30:00", D("0.001")),  # window opens (inclusive): 1000 × 1 / 1M
        ("2025-03-01T23:59:59", D("0.001")),
        ("2025-03-02T00:00:00", D("0.001")),  # past midnight, still inside the wrapped window
        ("2025-03-02T00:29:59", D("0.001")),
        ("2025-03-02T00:30:00", D("0.002")),  # window closes (exclusive)
    ],
)
def test_time_of_day_window_wraps_midnight(at: str, input_cost: Decimal) -> None:
    got = price("deepseek", "deepseek-chat", at, Tokens(input_tokens=1000))
    assert got["input"] == input_cost


@pytest.mark.parametrize(
    ("at", "price_id", "input_cost"),
    [
        ("2024-12-25T23:59:59", "deepseek/deepseek-chat@2024-09-06T00:00:00Z", D("0.0015")),
        ("2024-12-26T00:00:00", "deepseek/deepseek-chat@2024-12-26T00:00:00Z", D("0.001")),
        ("2025-02-08T15:59:59", "deepseek/deepseek-chat@2024-12-26T00:00:00Z", D("0.001")),
        ("2025-02-08T16:00:00", "deepseek/deepseek-chat@2025-02-08T16:00:00Z", D("0.002")),
    ],
)
def test_promotion_and_price_change_at_a_precise_second(at: str, price_id: str, input_cost: Decimal) -> None:
    got = price("deepseek", "deepseek-chat", at, Tokens(input_tokens=1000))
    assert got["price_id"] == price_id
    assert got["input"] == input_cost


def test_expired_promotion_hands_back_to_the_earlier_price() -> None:
    book = PriceBook.loads(
        """
prices:
  - {provider: p, model: m, currency: USD, effective_from: 2025-01-01, input: 2, output: 4}
  - {provider: p, model: m, currency: USD, effective_from: 2025-02-01, effective_to: 2025-02-08T16:00:00Z,
     input: 1, output: 2}
"""
    )
    assert book.entry_for("p", "m", utc("2025-01-31T23:59:59")).prices["input"] == 2  # type: ignore[union-attr]
    assert book.entry_for("p", "m", utc("2025-02-08T15:59:59")).prices["input"] == 1  # type: ignore[union-attr]
    assert book.entry_for("p", "m", utc("2025-02-08T16:00:00")).prices["input"] == 2  # type: ignore[union-attr]


def test_cache_reads_and_5m_and_1h_writes() -> None:
    tokens = Tokens(
        input_tokens=10000,
        cached_input_tokens=2000,
        cache_write_tokens=3000,
        cache_write_5m_tokens=1000,
        cache_write_1h_tokens=2000,
        output_tokens=500,
    )
    got = price("anthropic", "claude-sonnet-4-5-20250929", "2025-10-01", tokens)
    assert got["input"] == D("0.015")  # (10000 - 2000 - 3000) × 3 / 1M
    assert got["cached"] == D("0.0006")  # 2000 × 0.3 / 1M
    assert got["write"] == D("0.01575")  # 1000 × 3.75 / 1M + 2000 × 6 / 1M
    assert got["output"] == D("0.0075")  # 500 × 15 / 1M
    assert got["total"] == D("0.03885")
    assert got["reporting"] == D("0.03885")


def test_cache_write_without_ttl_split_is_priced_as_the_5m_write() -> None:
    got = price("anthropic", "claude-sonnet-4-5", "2025-10-01", Tokens(input_tokens=1000, cache_write_tokens=1000))
    assert got["input"] == 0
    assert got["write"] == D("0.00375")


def test_thinking_mode_output_price_covers_all_output_tokens() -> None:
    tokens = Tokens(input_tokens=1000, output_tokens=1000, reasoning_tokens=600)
    thinking = price("dashscope", "qwen-plus", "2025-09-01", tokens, thinking=True)
    plain = price("dashscope", "qwen-plus", "2025-09-01", tokens)
    assert thinking["output"] == D("0.008")  # 1000 × 8 / 1M, reasoning included
    assert plain["output"] == D("0.002")  # 1000 × 2 / 1M: reasoning defaults to the output price


def test_reasoning_price_and_per_request_fee() -> None:
    got = price("openai", "o3", "2025-07-01", Tokens(input_tokens=100, output_tokens=1000, reasoning_tokens=400))
    assert got["output"] == D("0.0088")  # 600 × 8 / 1M + 400 × 10 / 1M
    assert got["total"] == D("0.0002") + D("0.0088") + D("0.01")


@pytest.mark.parametrize(("tier", "input_cost"), [(None, D("0.002")), ("priority", D("0.0035")), ("batch", D("0.001"))])
def test_service_tiers_and_batch(tier: str | None, input_cost: Decimal) -> None:
    got = price("openai", "o3", "2025-07-01", Tokens(input_tokens=1000), service_tier=tier)
    assert got["input"] == input_cost


def test_tenant_discount_scales_every_price() -> None:
    tokens = Tokens(input_tokens=1000, cached_input_tokens=200, output_tokens=1000)
    got = price("openai", "o3", "2025-07-01", tokens, discount_percent=D(20))
    assert got["input"] == D("0.00128")  # 800 × 2 / 1M × 0.8
    assert got["cached"] == D("0.00008")  # 200 × 0.5 / 1M × 0.8
    assert got["output"] == D("0.0064")  # 1000 × 8 / 1M × 0.8
    assert got["total"] == D("0.00128") + D("0.00008") + D("0.0064") + D("0.008")  # per_request 0.01 × 0.8


def test_discount_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        discount_factor(D(120))


@pytest.mark.parametrize(
    ("at", "reporting"), [("2025-06-30T23:59:59", D("0.000274")), ("2025-07-01T00:00:00", D("0.000279"))]
)
def test_cny_to_usd_at_the_dated_rate(at: str, reporting: Decimal) -> None:
    got = price("hunyuan", "hunyuan-pro", at, Tokens(input_tokens=1000))
    assert got["total"] == D("0.002")
    assert got["reporting"] == reporting  # 0.002 × 0.1370, then 0.002 × 0.1395


def test_inverse_fx_pair_is_used_as_one_over_the_rate() -> None:
    rate = BOOK.fx_rate("USD", "CNY", utc("2025-03-01"))
    assert rate is not None
    assert abs(rate - 1 / D("0.1370")) < D("1e-20")
    assert BOOK.fx_rate("CNY", "USD", utc("2024-12-31")) is None
    assert BOOK.fx_rate("EUR", "EUR", utc("2024-12-31")) == 1


def test_missing_fx_rate_leaves_reporting_cost_null_but_priced() -> None:
    at = utc("2025-03-01T01:00:00")
    entry = BOOK.entry_for("hunyuan", "hunyuan-pro", at)
    priced = price_usage(entry, Tokens(input_tokens=1000), at=at, book=BOOK, reporting_currency="EUR")
    assert priced.pricing_status == "priced"
    assert priced.total_cost == D("0.002")
    assert priced.cost_reporting is None


def test_alias_prices_as_its_model() -> None:
    got = price("dashscope", "qwen-plus-latest", "2025-09-01", Tokens(input_tokens=1000))
    assert got["price_id"] == "dashscope/qwen-plus@2025-08-19T00:00:00Z"
    assert got["input"] == D("0.0008")
    assert BOOK.entry_for("dashscope", "qwen-plus-2025", utc("2025-09-01")) is None  # exact names only


def test_no_entry_is_unpriced_with_every_cost_null() -> None:
    priced = price_usage(None, Tokens(input_tokens=1000, output_tokens=10), at=utc("2025-09-01"))
    assert priced.pricing_status == "unpriced"
    costs = [priced.input_cost, priced.cached_input_cost, priced.cache_write_cost, priced.output_cost]
    assert costs == [None] * 4
    assert (priced.total_cost, priced.cost_reporting, priced.price_id, priced.currency) == (None, None, None, None)


def test_entry_priced_at_zero_on_purpose_is_free() -> None:
    got = price("hunyuan", "hunyuan-lite", "2025-01-01", Tokens(input_tokens=1000, output_tokens=1000))
    assert got["status"] == "free"
    assert got["total"] == 0
    assert got["reporting"] == 0


def test_zero_tokens_on_a_paid_entry_is_priced_not_free() -> None:
    assert price("openai", "o3", "2025-07-01", Tokens())["status"] == "priced"


def test_missing_output_price_is_unpriced_not_zero() -> None:
    plain = price("dashscope", "qwen3-30b-a3b", "2025-08-01", Tokens(input_tokens=100, output_tokens=100))
    assert plain["status"] == "unpriced"
    assert plain["total"] is None
    assert plain["price_id"] == "dashscope/qwen3-30b-a3b@2025-07-13T00:00:00Z"
    thinking = price("dashscope", "qwen3-30b-a3b", "2025-08-01", Tokens(output_tokens=100), thinking=True)
    assert thinking["output"] == D("0.00075")


def test_costs_are_exact_decimals_at_twelve_places() -> None:
    book = PriceBook.loads(
        "prices: [{provider: p, model: m, currency: USD, effective_from: 2025-01-01, input: 0.1, output: 0.0028}]"
    )
    entry = book.entry_for("p", "m", utc("2025-02-01"))
    assert entry is not None
    assert entry.prices["input"] == D("0.1")
    assert str(entry.prices["input"]) == "0.1"
    priced = price_usage(entry, Tokens(input_tokens=3, output_tokens=1), at=utc("2025-02-01"))
    assert priced.input_cost == D("0.0000003")
    assert priced.output_cost == D("0.0000000028")
    for cost in (priced.input_cost, priced.output_cost, priced.total_cost):
        assert isinstance(cost, Decimal)
        assert cost.as_tuple().exponent == -12


def test_inconsistent_counts_never_produce_negative_costs() -> None:
    tokens = Tokens(input_tokens=100, cached_input_tokens=300, output_tokens=10, reasoning_tokens=50)
    got = price("openai", "o3", "2025-07-01", tokens)
    assert got["input"] == 0
    assert got["output"] == D("0.0001")  # all 10 output tokens are reasoning: 10 × 10 / 1M
