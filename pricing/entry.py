"""The validated, immutable form of one price-book entry, and how its prices apply to a request.

An entry holds its top-level prices plus optional layers that override some of them: an input-length tier,
a time-of-day window, a service tier (`flex`, `priority`, or `batch`). A request's prices are the top-level
ones overlaid by the matching tier, then window, then service tier; defaults (`cached_input` = `input`, ...)
are applied after overlaying. A request longer than every tier's bound gets the last tier it outgrew (never
the cheaper top-level prices). Every combination is resolved once when the book loads, so pricing a
request is a couple of comparisons and a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

PRICE_FIELDS = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "output_thinking",
    "reasoning",
    "per_request",
)
ZERO = Decimal(0)

Prices = Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class Rates:
    """Fully resolved unit prices (per 1,000,000 tokens; `per_request` per request) for one situation.

    `output` is None when the book gives no output price for this situation (e.g. a thinking-only price).
    """

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal | None
    output_thinking: Decimal | None
    reasoning: Decimal | None
    per_request: Decimal
    per_token: PerToken = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_token", PerToken.of(self))

    @classmethod
    def resolve(cls, prices: Prices) -> Rates:
        inp = prices.get("input", ZERO)
        # A write whose TTL is not reported is priced as the default (5-minute) write where one is given.
        cache_write = prices.get("cache_write", prices.get("cache_write_5m", inp))
        output = prices.get("output")
        return cls(
            input=inp,
            cached_input=prices.get("cached_input", inp),
            cache_write=cache_write,
            cache_write_5m=prices.get("cache_write_5m", cache_write),
            cache_write_1h=prices.get("cache_write_1h", cache_write),
            output=output,
            output_thinking=prices.get("output_thinking"),
            reasoning=prices.get("reasoning", output),
            per_request=prices.get("per_request", ZERO),
        )

    def as_dict(self) -> dict[str, Decimal]:
        """The prices that are set, by field name."""
        return {name: value for name in PRICE_FIELDS if (value := getattr(self, name)) is not None}


def _per_token(price: Decimal | None) -> Decimal | None:
    return None if price is None else price.scaleb(-6)


@dataclass(frozen=True, slots=True)
class PerToken:
    """`Rates` divided by 1,000,000 (exactly: a shift of the exponent), ready to multiply by token counts."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal | None
    output_thinking: Decimal | None
    reasoning: Decimal | None

    @classmethod
    def of(cls, rates: Rates) -> PerToken:
        return cls(
            input=rates.input.scaleb(-6),
            cached_input=rates.cached_input.scaleb(-6),
            cache_write=rates.cache_write.scaleb(-6),
            cache_write_5m=rates.cache_write_5m.scaleb(-6),
            cache_write_1h=rates.cache_write_1h.scaleb(-6),
            output=_per_token(rates.output),
            output_thinking=_per_token(rates.output_thinking),
            reasoning=_per_token(rates.reasoning),
        )


@dataclass(frozen=True, slots=True)
class Tier:
    """Input-length band `(gt, lte]`; None means unbounded on that side."""

    gt: int | None
    lte: int | None
    prices: Prices

    def contains(self, input_tokens: int) -> bool:
        return (self.gt is None or input_tokens > self.gt) and (self.lte is None or input_tokens <= self.lte)

    def label(self) -> str:
        lo = "" if self.gt is None else f">{self.gt}"
        hi = "" if self.lte is None else f"<={self.lte}"
        return f"input {lo}{',' if lo and hi else ''}{hi}"


@dataclass(frozen=True, slots=True)
class Window:
    """Time-of-day window in UTC minutes since midnight, start inclusive, end exclusive; may wrap midnight."""

    start: int
    end: int
    text: str
    prices: Prices

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


RatesKey = tuple[int, int, str | None]


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One dated price for one (provider, model). Prices are per 1,000,000 tokens in `currency`."""

    provider: str
    model: str
    currency: str
    effective_from: datetime
    effective_to: datetime | None = None
    aliases: tuple[str, ...] = ()
    prices: Prices = field(default_factory=lambda: MappingProxyType({}))
    tiers: tuple[Tier, ...] = ()
    time_of_day: tuple[Window, ...] = ()
    service_tiers: Mapping[str, Prices] = field(default_factory=lambda: MappingProxyType({}))
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = ""
    price_id: str = field(init=False)
    is_free: bool = field(init=False)
    _rates: Mapping[RatesKey, Rates] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "price_id", f"{self.provider}/{self.model}@{format_ts(self.effective_from)}")
        layers: list[Prices] = [self.prices, *(t.prices for t in self.tiers), *(w.prices for w in self.time_of_day)]
        layers.extend(self.service_tiers.values())
        set_(self, "is_free", all(v == 0 for layer in layers for v in layer.values()))
        set_(self, "_rates", MappingProxyType(self._resolve_all()))

    def _resolve_all(self) -> dict[RatesKey, Rates]:
        out: dict[RatesKey, Rates] = {}
        tiers: list[Prices] = [{}, *(t.prices for t in self.tiers)]
        windows: list[Prices] = [{}, *(w.prices for w in self.time_of_day)]
        services: list[tuple[str | None, Prices]] = [(None, {}), *self.service_tiers.items()]
        for ti, tier in enumerate(tiers):
            for wi, window in enumerate(windows):
                for name, service in services:
                    out[(ti, wi, name)] = Rates.resolve({**self.prices, **tier, **window, **service})
        return out

    @property
    def names(self) -> tuple[str, ...]:
        """The model id and its aliases: every name this entry prices."""
        return (self.model, *self.aliases)

    @property
    def source(self) -> Any:
        return self.info.get("source")

    def in_force(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    def situation(self, input_tokens: int, at: datetime, service_tier: str | None) -> RatesKey:
        """Which tier, window and service tier apply to a request (0 = none)."""
        ti = 0
        for i, tier in enumerate(self.tiers, 1):
            if tier.contains(input_tokens):
                ti = i
                break
            if tier.lte is not None and input_tokens > tier.lte:
                ti = i  # in no band yet, past this one's bound: priced as the band it outgrew, not the base
        wi = 0
        if self.time_of_day:
            utc = at.astimezone(UTC)
            minute = utc.hour * 60 + utc.minute
            for i, window in enumerate(self.time_of_day, 1):
                if window.contains(minute):
                    wi = i
                    break
        service = service_tier if service_tier in self.service_tiers else None
        return (ti, wi, service)

    def rates(self, key: RatesKey) -> Rates:
        return self._rates[key]

    def rates_for(self, input_tokens: int, at: datetime, service_tier: str | None = None) -> Rates:
        """The resolved prices for a request of `input_tokens` prompt tokens at `at`."""
        return self._rates[self.situation(input_tokens, at, service_tier)]

    def describe(self, key: RatesKey) -> list[str]:
        """Human-readable names of the layers in `key`, for quotes and listings."""
        ti, wi, service = key
        parts = []
        if ti:
            parts.append(f"tier {self.tiers[ti - 1].label()}")
        if wi:
            parts.append(f"time_of_day {self.time_of_day[wi - 1].text} UTC")
        if service:
            parts.append(f"service_tier {service}")
        return parts


@dataclass(frozen=True, slots=True)
class FxRate:
    """`1 from_currency = rate to_currency`, in force from `effective_from`."""

    from_currency: str
    to_currency: str
    rate: Decimal
    effective_from: datetime
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = ""


def format_ts(ts: datetime) -> str:
    """ISO 8601 in UTC with a `Z` suffix, as used in price ids."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_short(ts: datetime) -> str:
    """Like `format_ts`, but a bare date for midnight UTC, as dates are usually written in the book."""
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%d") if utc.time() == datetime.min.time() else format_ts(utc)
