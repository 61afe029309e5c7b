"""The gateway's pricer: tenant discounts, unpriced warnings and counts, reloads, quotes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.costing import EventPricer
from pricing.calculator import Tokens
from pricing.pricer import Pricer
from tests.pricing.helpers import utc

BOOK = """
fx:
  - {from: CNY, to: USD, rate: "0.14", effective_from: 2025-01-01}
prices:
  - {provider: openai, model: gpt-4o, aliases: [gpt-4o-2024-08-06], currency: USD, effective_from: 2024-05-13,
     input: 5, output: 15}
  - {provider: openai, model: gpt-4o, aliases: [gpt-4o-2024-08-06], currency: USD, effective_from: 2024-11-15,
     input: 2.5, cached_input: 1.25, output: 10}
  - {provider: dashscope, model: qwen-plus, currency: CNY, effective_from: 2025-01-01, input: 0.8, output: 2,
     output_thinking: 8, tiers: [{input_tokens_lte: 128000}, {input_tokens_gt: 128000, input: 2.4, output: 20}]}
"""


@pytest.fixture
def book_path(write_book: Callable[..., Path]) -> Path:
    return write_book(BOOK)


@pytest.fixture
def pricer(book_path: Path) -> Pricer:
    return Pricer(book_path, discounts={"acme": Decimal(20)}, reporting_currency="USD")


def test_price_follows_time_for_the_same_model(pricer: Pricer) -> None:
    tokens = Tokens(input_tokens=1000, output_tokens=1000)
    before = pricer.price(tokens, provider="openai", model="gpt-4o", at=utc("2024-11-14T23:59:59"))
    after = pricer.price(tokens, provider="openai", model="gpt-4o", at=utc("2024-11-15T00:00:00"))
    again = pricer.price(tokens, provider="openai", model="gpt-4o", at=utc("2024-06-01"))
    assert (before.total_cost, after.total_cost, again.total_cost) == (
        Decimal("0.02"),
        Decimal("0.0125"),
        Decimal("0.02"),
    )
    assert after.price_id == "openai/gpt-4o@2024-11-15T00:00:00Z"


def test_tenant_discount_from_config(pricer: Pricer) -> None:
    tokens = Tokens(input_tokens=1000, output_tokens=1000)
    acme = pricer.price(tokens, provider="openai", model="gpt-4o", at=utc("2025-01-01"), tenant="acme")
    other = pricer.price(tokens, provider="openai", model="gpt-4o", at=utc("2025-01-01"), tenant="other")
    assert acme.total_cost == Decimal("0.01")  # 0.0125 × 0.8
    assert other.total_cost == Decimal("0.0125")


def test_reporting_currency_conversion(pricer: Pricer) -> None:
    priced = pricer.price(
        Tokens(input_tokens=1000, output_tokens=1000), provider="dashscope", model="qwen-plus", at=utc("2025-03-01")
    )
    assert (priced.currency, priced.total_cost, priced.cost_reporting) == (
        "CNY",
        Decimal("0.0028"),
        Decimal("0.000392"),
    )


def test_unpriced_model_warns_once_and_is_counted(pricer: Pricer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="meterway.pricing")
    tokens = Tokens(input_tokens=10, output_tokens=10)
    results = [pricer.price(tokens, provider="openai", model="gpt-9", at=utc("2025-01-01")) for _ in range(3)]
    pricer.price(tokens, provider="groq", model="gpt-9", at=utc("2025-01-01"))
    assert all(r.pricing_status == "unpriced" and r.total_cost is None and r.input_cost is None for r in results)
    warnings = [r.getMessage() for r in caplog.records if r.name == "meterway.pricing"]
    assert len(warnings) == 2
    assert "provider 'openai' model 'gpt-9'" in warnings[0]
    assert "provider 'groq' model 'gpt-9'" in warnings[1]
    assert pricer.unpriced_counts == {("openai", "gpt-9"): 3, ("groq", "gpt-9"): 1}


def test_reload_keeps_the_old_book_when_the_new_one_is_invalid(pricer: Pricer, book_path: Path) -> None:
    version = pricer.version
    book_path.write_text(BOOK.replace("input: 5,", "input: -5,"), encoding="utf-8")
    ok, reason = pricer.reload()
    assert not ok
    assert "'input' is negative: -5" in reason
    assert pricer.version == version
    assert pricer.price(Tokens(input_tokens=1000), provider="openai", model="gpt-4o", at=utc("2025-01-01")).total_cost


LATER = """
  - {provider: openai, model: gpt-4o, currency: USD, effective_from: 2025-06-01, input: 2, output: 8}
"""


def test_reload_swaps_in_a_valid_book(pricer: Pricer, book_path: Path) -> None:
    version = pricer.version
    book_path.write_text(BOOK + LATER, encoding="utf-8")
    ok, message = pricer.reload()
    assert ok, message
    assert pricer.version != version
    priced = pricer.price(Tokens(input_tokens=1000), provider="openai", model="gpt-4o", at=utc("2025-07-01"))
    assert (priced.input_cost, priced.price_id) == (Decimal("0.002"), "openai/gpt-4o@2025-06-01T00:00:00Z")
    earlier = pricer.price(Tokens(input_tokens=1000), provider="openai", model="gpt-4o", at=utc("2025-01-01"))
    assert earlier.input_cost == Decimal("0.0025")


@pytest.mark.parametrize(
    ("edit", "change"),
    [
        (("input: 2.5, cached_input: 1.25,", "input: 3, cached_input: 1.25,"), "its input 2.5 -> 3 changed"),
        ((", cached_input: 1.25", ""), "its cached_input 1.25 -> none changed"),
        (("effective_from: 2024-11-15,", "effective_from: 2024-11-15, effective_to: 2025-01-01,"),
         "its effective_to changed"),
        (("input: 0.8, output: 2,", "input: 0.8, output: 2.5,"), "its output 2 -> 2.5 changed"),
    ],
)  # fmt: skip
def test_a_reload_that_edits_an_entry_in_force_is_a_correction_named_in_a_warning(
    pricer: Pricer, book_path: Path, edit: tuple[str, str], change: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The requests an entry priced keep their costs under its price id: the reload says which to re-price."""
    caplog.set_level(logging.WARNING, logger="meterway.pricing")
    book_path.write_text(BOOK.replace(*edit), encoding="utf-8")
    ok, message = pricer.reload()
    assert ok
    assert "corrected entries already in force: " in message and change in message
    assert "keep their old costs under the same price id until re-priced" in message
    assert [r.levelname for r in caplog.records] == ["WARNING"] and change in caplog.records[0].getMessage()


def test_a_reload_that_drops_an_entry_in_force_names_it(pricer: Pricer, book_path: Path) -> None:
    first = BOOK.split("  - {provider: openai, model: gpt-4o, aliases: [gpt-4o-2024-08-06], currency: USD, "
                       "effective_from: 2024-11-15,")[0]  # fmt: skip
    book_path.write_text(first, encoding="utf-8")
    ok, message = pricer.reload()
    assert ok
    assert "openai/gpt-4o@2024-11-15T00:00:00Z: in force since 2024-11-15, but missing from the new book" in message


def test_reload_lets_an_entry_not_yet_in_force_change(pricer: Pricer, book_path: Path) -> None:
    book_path.write_text(BOOK + LATER.replace("2025-06-01", "2999-01-01"), encoding="utf-8")
    assert pricer.reload()[0]
    book_path.write_text(BOOK + LATER.replace("2025-06-01", "2999-01-01").replace("input: 2,", "input: 3,"))
    ok, message = pricer.reload()
    assert ok and "corrected" not in message, message
    future = pricer.price(Tokens(input_tokens=1000), provider="openai", model="gpt-4o", at=utc("2999-02-01"))
    assert future.input_cost == Decimal("0.003")


def test_reload_lets_an_entry_in_force_get_a_future_end(pricer: Pricer, book_path: Path) -> None:
    ended = BOOK.replace("effective_from: 2024-11-15,", "effective_from: 2024-11-15, effective_to: 2999-01-01,")
    book_path.write_text(ended, encoding="utf-8")
    ok, message = pricer.reload()
    assert ok and "corrected" not in message, message
    after = pricer.price(Tokens(input_tokens=10), provider="openai", model="gpt-4o", at=utc("2999-01-02"))
    assert after.price_id == "openai/gpt-4o@2024-05-13T00:00:00Z", "the entry before it is in force again"


def test_quote_is_json_ready_with_its_breakdown(pricer: Pricer) -> None:
    quote = pricer.quote("dashscope", "qwen-plus", 200000, 1000, cached_tokens=0, at=utc("2025-03-01"), tenant="acme")
    assert json.loads(json.dumps(quote)) == quote
    assert quote["price_id"] == "dashscope/qwen-plus@2025-01-01T00:00:00Z"
    assert quote["applied"] == ["tier input >128000"]
    assert quote["unit_prices_per_1m"]["input"] == "2.4"
    assert quote["unit_prices_per_1m"]["output"] == "20"
    assert quote["discount_percent"] == "20"
    assert quote["costs"] == {
        "input": "0.384",  # 200000 × 2.4 / 1M × 0.8
        "cached_input": "0",
        "cache_write": "0",
        "output": "0.016",  # 1000 × 20 / 1M × 0.8
        "per_request": "0",
        "total": "0.4",
    }
    assert (quote["currency"], quote["fx_rate"], quote["cost_reporting"]) == ("CNY", "0.14", "0.056")


def test_quote_for_an_unknown_model(pricer: Pricer) -> None:
    quote = pricer.quote("openai", "gpt-9", 10, 10)
    assert quote["pricing_status"] == "unpriced"
    assert quote["cost_reporting"] is None
    assert pricer.unpriced_counts == {}


def test_price_needs_an_aware_time(pricer: Pricer) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pricer.price(Tokens(), provider="openai", model="gpt-4o", at=utc("2025-01-01").replace(tzinfo=None))


def test_a_request_naming_no_model_is_unpriced_without_a_warning(
    pricer: Pricer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meterway.pricing")
    priced = pricer.price_first(Tokens(), provider="openai", models=(), at=utc("2025-01-01"))
    assert priced.pricing_status == "unpriced" and priced.total_cost is None
    assert not caplog.records and pricer.unpriced_counts == {}


def test_a_failed_reload_is_logged_once(pricer: Pricer, book_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    book_path.write_text(BOOK.replace("input: 5,", "input: -5,"), encoding="utf-8")
    assert not EventPricer(pricer).reload()[0]  # what SIGHUP and POST /admin/prices/reload call
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "price book reload failed, keeping version" in caplog.records[0].getMessage()
