"""Amounts with their currency, conversion through a dated FX function, and a request's worst-case cost.

`estimate_max_cost` prices a request before it is sent as if it used every output token it may
(`max_tokens` from the request, or `default_max_output_tokens` for each answer asked for when the
client set no limit), at the
dearest output price the entry has for it (thinking or reasoning prices included), with the
tenant's discount. That is what a budget reserves; the real cost settles the reservation later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pricing.calculator import EXACT, PLACES, Tokens, discount_factor, price_with_rates
from pricing.pricer import Pricer

FxFunction = Callable[[str, str, datetime], Decimal | None]
"""How many units of the second currency one unit of the first is worth at a time (`PriceBook.fx_rate`)."""

DEFAULT_MAX_OUTPUT_TOKENS = 4096
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{plain(self.amount)} {self.currency}"


def plain(value: Decimal) -> str:
    """A Decimal as a plain decimal string without exponent or trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def convert(money: Money, currency: str, at: datetime, fx: FxFunction) -> Decimal | None:
    """`money` in `currency` at `at`, rounded to the event table's 12 places; None without a rate."""
    if money.currency == currency:
        return money.amount
    rate = fx(money.currency, currency, at)
    if rate is None:
        return None
    return EXACT.quantize(EXACT.multiply(money.amount, rate), PLACES)


def estimate_max_cost(
    pricer: Pricer,
    provider: str,
    model: str,
    input_tokens: int,
    max_output_tokens: int | None,
    at: datetime,
    tenant: str | None = None,
    *,
    answers: int = 1,
    default_max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
    service_tier: str | None = None,
) -> Money | None:
    """The most this request can cost, in the price entry's currency; None when the book does not price it.
    `max_output_tokens` covers every answer already; `answers` (`n`, `candidateCount`) multiplies the default.
    `service_tier`: the tier the request asks for (`priority` costs more than the standard rates)."""
    book = pricer.book
    entry = book.entry_for(provider, model, at)
    if entry is None:
        return None
    if max_output_tokens is None or max_output_tokens < 0:
        output = default_max_output_tokens * max(answers, 1)
    else:
        output = max_output_tokens
    tokens = Tokens(input_tokens=max(input_tokens, 0), output_tokens=output)
    rates = entry.rates_for(tokens.input_tokens, at, service_tier)
    factor = discount_factor(pricer.discounts.get(tenant)) if tenant is not None else discount_factor(None)
    highest: Decimal | None = None
    # Output may be billed as plain output, at a thinking-mode price or as reasoning: reserve the dearest.
    as_reasoning = Tokens(tokens.input_tokens, output_tokens=output, reasoning_tokens=output)
    for variant, thinking in ((tokens, False), (tokens, True), (as_reasoning, False)):
        priced = price_with_rates(
            entry, rates, variant, at=at, thinking=thinking, factor=factor, book=None, reporting_currency=entry.currency
        )
        if priced.total_cost is not None and (highest is None or priced.total_cost > highest):
            highest = priced.total_cost
    if highest is None:
        return None
    return Money(highest, entry.currency)
