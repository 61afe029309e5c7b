"""The cost of one request: a pure function of a price entry, token counts and the request's time.

Token semantics follow the event table: `input_tokens` includes cached reads and cache writes, and
`output_tokens` includes reasoning. Each cost column is `tokens × price / 1,000,000`, scaled by the tenant
discount, computed exactly in Decimal and rounded once to 12 decimal places (the DECIMAL(38,12) column);
the total is the sum of the rounded columns, so the columns always add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import TYPE_CHECKING, Literal, Protocol

from pricing.entry import ZERO, PerToken, PriceEntry, Rates

if TYPE_CHECKING:
    from pricing.book import PriceBook

PricingStatus = Literal["priced", "unpriced", "free"]

# Wide enough that no product of a token count, a price and a discount is ever rounded before quantizing.
EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN)
PLACES = Decimal("1E-12")
ZERO_COST = Decimal("0E-12")
HUNDRED = Decimal(100)
ONE = Decimal(1)


class TokenCounts(Protocol):
    """Normalized usage of one request; the cache and reasoning counts are parts of input and output."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def cache_write_5m_tokens(self) -> int: ...
    @property
    def cache_write_1h_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Tokens:
    """A plain `TokenCounts`, for callers that have no usage object of their own."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Priced:
    """A request's cost in the entry's currency, and in the reporting currency where an FX rate is known.

    When unpriced, every cost is None: an unknown price is never reported as zero. Not frozen: building a
    frozen dataclass costs more than all the arithmetic of a request, and this is built on every request.
    """

    pricing_status: PricingStatus
    currency: str | None = None
    input_cost: Decimal | None = None
    cached_input_cost: Decimal | None = None
    cache_write_cost: Decimal | None = None
    output_cost: Decimal | None = None
    per_request_cost: Decimal | None = None
    total_cost: Decimal | None = None
    cost_reporting: Decimal | None = None
    reporting_currency: str | None = None
    price_id: str | None = None


def unpriced() -> Priced:
    """The result for a request no entry prices: every cost None."""
    return Priced("unpriced")


def discount_factor(discount_percent: Decimal | None) -> Decimal:
    """The multiplier for a tenant discount: 20 -> 0.8."""
    if not discount_percent:
        return ONE
    if not ZERO <= discount_percent <= HUNDRED:
        raise ValueError(f"discount_percent must be between 0 and 100, got {discount_percent}")
    return EXACT.subtract(ONE, EXACT.divide(discount_percent, HUNDRED))


def _count(tokens: int) -> int:
    """Token counts below zero (inconsistent usage reports) count as none."""
    return tokens if tokens > 0 else 0


def _cost(tokens: int, per_token: Decimal, factor: Decimal) -> Decimal:
    if not tokens or not per_token:
        return ZERO_COST
    amount = EXACT.multiply(per_token, tokens)
    if factor != ONE:
        amount = EXACT.multiply(amount, factor)
    return EXACT.quantize(amount, PLACES)


def _output_cost(rates: PerToken, output: int, reasoning: int, thinking: bool, factor: Decimal) -> Decimal | None:
    """Output cost, or None when the entry has no price for the output this request produced."""
    if thinking and rates.output_thinking is not None:
        return _cost(output, rates.output_thinking, factor)
    reasoning = min(_count(reasoning), output)
    plain = output - reasoning
    if (plain and rates.output is None) or (reasoning and rates.reasoning is None):
        return None
    return _cost(plain, rates.output or ZERO, factor) + _cost(reasoning, rates.reasoning or ZERO, factor)


def price_usage(
    entry: PriceEntry | None,
    tokens: TokenCounts,
    *,
    at: datetime,
    thinking: bool = False,
    discount_percent: Decimal | None = None,
    service_tier: str | None = None,
    book: PriceBook | None = None,
    reporting_currency: str = "USD",
) -> Priced:
    """Price one request. `book` supplies FX rates for `cost_reporting`; without it only same-currency works."""
    if entry is None:
        return unpriced()
    return price_with_rates(
        entry,
        entry.rates_for(tokens.input_tokens, at, service_tier),
        tokens,
        at=at,
        thinking=thinking,
        factor=discount_factor(discount_percent),
        book=book,
        reporting_currency=reporting_currency,
    )


def price_with_rates(
    entry: PriceEntry,
    rates: Rates,
    tokens: TokenCounts,
    *,
    at: datetime,
    thinking: bool,
    factor: Decimal,
    book: PriceBook | None,
    reporting_currency: str,
) -> Priced:
    """Price one request at already selected rates (the tier, window and service tier are chosen)."""
    per_token = rates.per_token
    cached = _count(tokens.cached_input_tokens)
    part_5m = _count(tokens.cache_write_5m_tokens)
    part_1h = _count(tokens.cache_write_1h_tokens)
    written = max(tokens.cache_write_tokens, part_5m + part_1h)
    uncached = _count(tokens.input_tokens - cached - written)
    output_cost = _output_cost(per_token, _count(tokens.output_tokens), tokens.reasoning_tokens, thinking, factor)
    if output_cost is None:
        return Priced("unpriced", currency=entry.currency, price_id=entry.price_id)
    input_cost = _cost(uncached, per_token.input, factor)
    cached_cost = _cost(cached, per_token.cached_input, factor)
    write_cost = ZERO_COST
    if written:
        write_cost = (
            _cost(written - part_5m - part_1h, per_token.cache_write, factor)
            + _cost(part_5m, per_token.cache_write_5m, factor)
            + _cost(part_1h, per_token.cache_write_1h, factor)
        )
    per_request = ZERO_COST
    if rates.per_request:
        per_request = EXACT.quantize(EXACT.multiply(rates.per_request, factor), PLACES)
    total = input_cost + cached_cost + write_cost + output_cost + per_request
    rate = _fx(entry.currency, reporting_currency, at, book)
    reporting = (
        None if rate is None else (total if rate == ONE else EXACT.quantize(EXACT.multiply(total, rate), PLACES))
    )
    status: PricingStatus = "free" if entry.is_free else "priced"
    return Priced(
        status,
        entry.currency,
        input_cost,
        cached_cost,
        write_cost,
        output_cost,
        per_request,
        total,
        reporting,
        reporting_currency,
        entry.price_id,
    )


def _fx(currency: str, reporting_currency: str, at: datetime, book: PriceBook | None) -> Decimal | None:
    if currency == reporting_currency:
        return ONE
    return None if book is None else book.fx_rate(currency, reporting_currency, at)
