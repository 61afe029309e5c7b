"""Recommendations: smaller model, prompt caching and cheaper provider, with evidence and monthly savings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from governance.recommend import FAMILIES, Settings, UsageAggregate, recommend
from pricing.book import PriceBook

AT = datetime(2025, 6, 1, tzinfo=UTC)
BOOK = PriceBook.loads(
    """
fx:
  - {from: CNY, to: USD, rate: "0.14", effective_from: 2025-01-01}
prices:
  - {provider: openai, model: gpt-4.1, aliases: [gpt-4.1-2025-04-14], currency: USD, effective_from: 2025-01-01,
     input: 2, cached_input: 0.5, output: 8}
  - {provider: openai, model: gpt-4.1-mini, currency: USD, effective_from: 2025-01-01,
     input: 0.4, cached_input: 0.1, output: 1.6}
  - {provider: azure, model: gpt-4.1, currency: USD, effective_from: 2025-01-01, input: 1.8, output: 7}
  - {provider: dashscope, model: qwen-plus, currency: CNY, effective_from: 2025-01-01, input: 0.8, output: 2}
  - {provider: dashscope-intl, model: qwen-plus, currency: USD, effective_from: 2025-01-01, input: 0.4, output: 1.2}
  - {provider: groq, model: mystery-large, currency: USD, effective_from: 2025-01-01, input: 5, output: 10}
  - {provider: groq, model: mystery-small, currency: USD, effective_from: 2025-01-01, input: 0.1, output: 0.2}
""",
    reporting_currency="USD",
)


def agg(provider: str, model: str, **kw: object) -> UsageAggregate:
    fields: dict[str, object] = {
        "provider": provider,
        "model": model,
        "requests": 10_000,
        "input_tokens": 3_000_000,
        "cached_input_tokens": 0,
        "output_tokens": 1_000_000,
        "avg_prompt_tokens": Decimal(300),
        "cost": Decimal(14),
        "tenant": "acme",
    }
    fields.update(kw)
    return UsageAggregate(**fields)  # type: ignore[arg-type]


def run(*aggregates: UsageAggregate, **kw: object) -> list[tuple[str, str, str, Decimal]]:
    found = recommend(aggregates, BOOK, at=AT, window_days=7, reporting_currency="USD", **kw)  # type: ignore[arg-type]
    return [(r.kind, r.provider, r.model, r.monthly_saving) for r in found]


def test_an_expensive_model_on_short_prompts_gets_the_next_tier_of_its_family() -> None:
    (smaller, other) = recommend(
        [agg("openai", "gpt-4.1-2025-04-14")], BOOK, at=AT, window_days=7, reporting_currency="USD"
    )
    assert smaller.kind == "smaller_model"
    # 3M in + 1M out: 14 USD on gpt-4.1, 2.8 on gpt-4.1-mini, over 7 days -> x30/7 a month
    assert smaller.monthly_saving == Decimal(48) and smaller.currency == "USD"
    assert "gpt-4.1-mini, the next tier of the gpt-4.1 family" in smaller.advice
    ev = smaller.evidence
    assert ev["family"] == "gpt-4.1" and ev["requests"] == 10_000 and ev["avg_prompt_tokens"] == "300"
    assert ev["price_id"] == "openai/gpt-4.1@2025-01-01T00:00:00Z"
    assert ev["alternative_price_id"] == "openai/gpt-4.1-mini@2025-01-01T00:00:00Z"
    assert ev["prices_per_1m"] == {"input": "2", "cached_input": "0.5", "output": "8", "currency": "USD"}
    assert "assumption" in ev and ev["window_days"] == "7"
    assert other.kind == "cheaper_provider" and other.evidence["alternative_provider"] == "azure"
    assert other.monthly_saving == Decimal("6.8571")  # (14 - 12.4) x 30/7


def test_mostly_short_prompts_by_share_and_discounts() -> None:
    long_avg = agg("openai", "gpt-4.1", avg_prompt_tokens=Decimal(900), short_prompt_share=Decimal("0.9"))
    kinds = run(long_avg, providers={"openai"})
    assert kinds == [("smaller_model", "openai", "gpt-4.1", Decimal("43.2"))]  # 90% of the traffic moves
    assert run(agg("openai", "gpt-4.1", short_prompt_share=Decimal("0.5")), providers={"openai"}) == []
    discounted = run(agg("openai", "gpt-4.1"), providers={"openai"}, discounts={"acme": Decimal(50)})
    assert discounted == [("smaller_model", "openai", "gpt-4.1", Decimal(24))]


def test_a_model_in_no_family_gets_no_smaller_model_advice() -> None:
    assert run(agg("groq", "mystery-large")) == []
    own = Settings(families={"mystery": ("mystery-large", "mystery-small")})
    assert [k for k, *_ in run(agg("groq", "mystery-large"), settings=own)] == ["smaller_model"]


def test_low_cache_share_on_long_prompts() -> None:
    long = agg(
        "openai",
        "gpt-4.1",
        requests=1000,
        input_tokens=5_000_000,
        cached_input_tokens=250_000,
        output_tokens=200_000,
        avg_prompt_tokens=Decimal(5000),
    )
    found = recommend([long], BOOK, at=AT, window_days=7, reporting_currency="USD", providers={"openai"})
    (caching,) = found
    # 45% more of 5M input from cache, 1.5 USD/1M cheaper: 3.375 USD a week
    assert caching.kind == "prompt_caching" and caching.monthly_saving == Decimal("14.4643")
    assert caching.evidence["cached_share"] == "0.05"
    assert "repetition not measured" in caching.evidence["assumption"]
    measured = agg(
        "openai", "gpt-4.1", requests=1000, input_tokens=5_000_000, cached_input_tokens=250_000,
        output_tokens=200_000, avg_prompt_tokens=Decimal(5000), repeated_prompt_share=Decimal("0.25"),
    )  # fmt: skip
    assert run(measured, providers={"openai"}) == [("prompt_caching", "openai", "gpt-4.1", Decimal("6.4286"))]
    # no discount for cached input on the model: nothing to gain
    assert run(agg("azure", "gpt-4.1", avg_prompt_tokens=Decimal(5000)), providers={"azure"}) == []


def test_the_same_model_cheaper_at_another_provider_compared_through_fx() -> None:
    (found,) = recommend([agg("dashscope-intl", "qwen-plus")], BOOK, at=AT, window_days=30, reporting_currency="USD")
    assert found.kind == "cheaper_provider" and found.evidence["alternative_provider"] == "dashscope"
    # intl: 3 x 0.4 + 1 x 1.2 = 2.4 USD; mainland: (3 x 0.8 + 1 x 2) CNY x 0.14 = 0.616 USD
    assert found.monthly_saving == Decimal("1.784")
    assert found.evidence["fx_rates"] == {"CNY": "0.14", "USD": "1"}
    assert run(agg("dashscope-intl", "qwen-plus"), providers={"openai"}) == []  # dashscope not routable


def test_small_traffic_and_unknown_models_are_left_alone() -> None:
    assert run(agg("openai", "gpt-4.1", requests=50)) == []
    assert run(agg("openai", "no-such-model")) == []


def test_every_family_member_is_in_the_shipped_book() -> None:
    book = PriceBook.load(Path(__file__).resolve().parents[2] / "pricing" / "book")
    names = {name for entry in book.entries for name in entry.names}
    missing = [m for tiers in FAMILIES.values() for m in tiers if m not in names]
    assert missing == []
