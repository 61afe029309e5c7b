"""The price book shipped in `pricing/book/` loads, passes `prices check`, and prices real cases correctly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing import cli
from pricing.book import PriceBook
from pricing.calculator import Tokens, price_usage
from pricing.pricer import DEFAULT_BOOK
from tests.pricing.helpers import utc

PROVIDERS = {
    "anthropic",
    "azure",
    "azure-data-zone",
    "dashscope",
    "dashscope-intl",
    "deepseek",
    "deepseek-usd",
    "gemini",
    "groq",
    "hunyuan",
    "moonshot",
    "moonshot-intl",
    "openai",
}


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load(DEFAULT_BOOK, reporting_currency="USD")


def test_prices_check_passes(capsys: pytest.CaptureFixture[str], book: PriceBook) -> None:
    assert cli.main(["prices", "check"]) == 0
    assert capsys.readouterr().out == f"ok: {len(book.entries)} entries, {len(PROVIDERS)} providers\n"


def test_every_provider_is_there_and_every_entry_has_a_source(book: PriceBook) -> None:
    assert set(book.providers) == PROVIDERS
    assert [e.price_id for e in book.entries if not e.source] == []
    assert set(book.currencies) == {"CNY", "USD"}


@pytest.mark.parametrize(
    ("provider", "model", "at", "tokens", "total"),
    [
        # DeepSeek off-peak (UTC 16:30-00:30) half price, CNY: 1M input at ¥1 instead of ¥2.
        ("deepseek", "deepseek-chat", "2025-03-01T17:00:00", Tokens(input_tokens=1_000_000), Decimal("1")),
        ("deepseek", "deepseek-chat", "2025-03-01T12:00:00", Tokens(input_tokens=1_000_000), Decimal("2")),
        ("deepseek-usd", "deepseek-chat", "2025-03-01T12:00:00", Tokens(input_tokens=1_000_000), Decimal("0.27")),
        # Qwen-plus: >128K prompt moves the whole request to ¥2.4 / ¥20.
        ("dashscope", "qwen-plus", "2025-09-01", Tokens(input_tokens=200_000, output_tokens=1000), Decimal("0.5")),
        # gpt-4o's price cut, priced through the dated snapshot alias.
        ("openai", "gpt-4o-2024-11-20", "2025-01-01", Tokens(input_tokens=1_000_000), Decimal("2.5")),
        ("azure-data-zone", "gpt-4o-2024-08-06", "2025-04-01", Tokens(input_tokens=1_000_000), Decimal("2.75")),
        # Anthropic 1-hour cache write at 2× input ($6); above 200K input tokens, the long-context tier's $12.
        (
            "anthropic",
            "claude-sonnet-4-5",
            "2025-10-01",
            Tokens(input_tokens=100_000, cache_write_tokens=100_000, cache_write_1h_tokens=100_000),
            Decimal("0.6"),
        ),
        (
            "anthropic",
            "claude-sonnet-4-5",
            "2025-10-01",
            Tokens(input_tokens=1_000_000, cache_write_tokens=1_000_000, cache_write_1h_tokens=1_000_000),
            Decimal("12"),
        ),
    ],
)
def test_real_prices(book: PriceBook, provider: str, model: str, at: str, tokens: Tokens, total: Decimal) -> None:
    priced = price_usage(book.entry_for(provider, model, utc(at)), tokens, at=utc(at), book=book)
    assert priced.pricing_status == "priced"
    assert priced.total_cost == total
    assert priced.cost_reporting is not None


def test_free_model_and_moved_aliases(book: PriceBook) -> None:
    free = price_usage(
        book.entry_for("hunyuan", "hunyuan-lite", utc("2025-06-01")), Tokens(input_tokens=9), at=utc("2025-06-01")
    )
    assert free.pricing_status == "free"
    # qwen-plus-latest: its own price from 2025-04-29, back to qwen-plus's from 2025-07-13.
    assert book.entry_for("dashscope", "qwen-plus-latest", utc("2025-05-01")).price_id == (  # type: ignore[union-attr]
        "dashscope/qwen-plus-latest@2025-04-29T00:00:00Z"
    )
    assert book.entry_for("dashscope", "qwen-plus-latest", utc("2025-07-13")).model == "qwen-plus"  # type: ignore[union-attr]
