"""Savings advice from real traffic and the price book, each with its evidence and its monthly saving.

Input is one `UsageAggregate` per (tenant, provider, model) over a window of `window_days` days (the
rollups give them). Every cost here is the aggregate's token counts priced with the book's entries in
force at `at`, converted into the reporting currency with the book's FX rates, scaled by the tenant's
discount, and scaled to a 30-day month. Three rules:

- `smaller_model`: a model used mostly on short prompts (`short_prompt_share` of requests at or above
  `short_share` when the aggregate knows it, else an average prompt of at most `short_prompt_tokens`)
  while a cheaper model of the same family exists on the same provider. Families are the explicit
  tiers in `FAMILIES` (most capable first; the advice is the next tier down that the book prices for
  that provider); a model in no family gets no such advice, its family is never guessed from its name.
  The saving assumes the same token counts on the smaller model, for the short-prompt share of traffic.
- `prompt_caching`: long prompts (average at least `long_prompt_tokens`) with a cached share of input
  under `low_cache_share`, on a model whose cached input is cheaper than its input. The saving assumes
  `target_cache_share` of input tokens could be read from cache (capped by `repeated_prompt_share`
  when the aggregate knows how much of the prompt text repeats); the evidence states the assumption.
- `cheaper_provider`: the same model (its id or any alias) priced lower by another provider in the
  book (or among `providers`, the ones the gateway can route to), compared in the reporting currency.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from governance.money import FxFunction, plain
from pricing.book import PriceBook
from pricing.calculator import discount_factor
from pricing.entry import PriceEntry

ZERO = Decimal(0)
MONTH_DAYS = Decimal(30)
MILLION = Decimal(1_000_000)
CENTS = Decimal("0.0001")

FAMILIES: dict[str, tuple[str, ...]] = {
    "gpt-5": ("gpt-5", "gpt-5-mini", "gpt-5-nano"),
    "gpt-4.1": ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano"),
    "gpt-4o": ("gpt-4o", "gpt-4o-mini"),
    "o-series": ("o3", "o4-mini"),
    "claude-4.5": ("claude-opus-4-5-20251101", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"),
    "claude-3.5": ("claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022"),
    "gemini-2.5": ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
    "gemini-2.0": ("gemini-2.0-flash", "gemini-2.0-flash-lite"),
    "qwen": ("qwen-max", "qwen-plus", "qwen-flash"),
    "moonshot-v1": ("moonshot-v1-128k", "moonshot-v1-32k", "moonshot-v1-8k"),
    "llama-groq": ("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
    "gpt-oss": ("openai/gpt-oss-120b", "openai/gpt-oss-20b"),
}


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    provider: str  # the price-book provider (a provider's `price_as` name)
    model: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    avg_prompt_tokens: Decimal
    cost: Decimal  # recorded, in the reporting currency
    tenant: str | None = None
    short_prompt_share: Decimal | None = None  # share of requests with a short prompt, when known
    repeated_prompt_share: Decimal | None = None  # share of prompt tokens that repeat earlier prompts, when known


@dataclass(frozen=True, slots=True)
class Settings:
    short_prompt_tokens: int = 500
    short_share: Decimal = Decimal("0.8")
    long_prompt_tokens: int = 2000
    low_cache_share: Decimal = Decimal("0.2")
    target_cache_share: Decimal = Decimal("0.5")
    min_requests: int = 100
    min_monthly_saving: Decimal = Decimal(1)
    families: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: FAMILIES)


@dataclass(frozen=True, slots=True)
class Recommendation:
    kind: str  # "smaller_model" | "prompt_caching" | "cheaper_provider"
    tenant: str | None
    provider: str
    model: str
    advice: str
    monthly_saving: Decimal
    currency: str
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Context:
    book: PriceBook
    at: datetime
    currency: str
    fx: FxFunction
    monthly: Decimal  # multiplier from the window to a 30-day month
    settings: Settings
    discounts: Mapping[str, Decimal]


def _traffic_cost(entry: PriceEntry, agg: UsageAggregate, ctx: _Context, share: Decimal = Decimal(1)) -> Decimal | None:
    """What `share` of the aggregate's traffic costs on `entry`, in the reporting currency; None if unpriced."""
    rates = entry.rates_for(int(agg.avg_prompt_tokens), ctx.at)
    if rates.output is None and agg.output_tokens:
        return None
    rate = ctx.fx(entry.currency, ctx.currency, ctx.at)
    if rate is None:
        return None
    uncached = max(agg.input_tokens - agg.cached_input_tokens, 0)
    tokens = uncached * rates.input + agg.cached_input_tokens * rates.cached_input
    tokens += agg.output_tokens * (rates.output or ZERO)
    total = tokens / MILLION + agg.requests * rates.per_request
    return total * rate * share * discount_factor(ctx.discounts.get(agg.tenant or ""))


def _money(per_window: Decimal, ctx: _Context) -> Decimal:
    """A per-window amount as a monthly one, to 4 decimal places."""
    return (per_window * ctx.monthly).quantize(CENTS)


def _prices(entry: PriceEntry, at: datetime, prompt: Decimal) -> dict[str, str]:
    rates = entry.rates_for(int(prompt), at)
    out = {"input": plain(rates.input), "cached_input": plain(rates.cached_input), "currency": entry.currency}
    if rates.output is not None:
        out["output"] = plain(rates.output)
    return out


def _base_evidence(agg: UsageAggregate, ctx: _Context, entry: PriceEntry) -> dict[str, Any]:
    return {
        "requests": agg.requests,
        "input_tokens": agg.input_tokens,
        "cached_input_tokens": agg.cached_input_tokens,
        "output_tokens": agg.output_tokens,
        "avg_prompt_tokens": plain(round(agg.avg_prompt_tokens, 1)),
        "recorded_cost": plain(agg.cost),
        "window_days": plain(MONTH_DAYS / ctx.monthly),
        "price_id": entry.price_id,
        "prices_per_1m": _prices(entry, ctx.at, agg.avg_prompt_tokens),
    }


def _smaller_model(agg: UsageAggregate, entry: PriceEntry, ctx: _Context) -> Recommendation | None:
    s = ctx.settings
    if agg.short_prompt_share is not None:
        share = agg.short_prompt_share
        if share < s.short_share:
            return None
    elif agg.avg_prompt_tokens <= s.short_prompt_tokens:
        share = Decimal(1)
    else:
        return None
    family = next(((name, tiers) for name, tiers in s.families.items() if set(entry.names) & set(tiers)), None)
    if family is None:
        return None
    name, tiers = family
    position = next(i for i, tier in enumerate(tiers) if tier in entry.names)
    for candidate in tiers[position + 1 :]:
        target = ctx.book.entry_for(entry.provider, candidate, ctx.at)
        if target is None:
            continue
        now, then = _traffic_cost(entry, agg, ctx, share), _traffic_cost(target, agg, ctx, share)
        if now is None or then is None:
            return None
        saving = _money(now - then, ctx)
        if saving < s.min_monthly_saving:
            return None
        evidence = _base_evidence(agg, ctx, entry) | {
            "family": name,
            "short_prompt_share": None if agg.short_prompt_share is None else plain(agg.short_prompt_share),
            "short_prompt_tokens": s.short_prompt_tokens,
            "alternative_price_id": target.price_id,
            "alternative_prices_per_1m": _prices(target, ctx.at, agg.avg_prompt_tokens),
            "assumption": "the same token counts on the smaller model, for the short-prompt share of requests",
        }
        advice = (
            f"{agg.model} on {agg.provider} serves mostly short prompts (avg {plain(round(agg.avg_prompt_tokens, 0))} "
            f"tokens); {candidate}, the next tier of the {name} family, would cost less for them"
        )
        return Recommendation(
            "smaller_model", agg.tenant, agg.provider, agg.model, advice, saving, ctx.currency, evidence
        )
    return None


def _prompt_caching(agg: UsageAggregate, entry: PriceEntry, ctx: _Context) -> Recommendation | None:
    s = ctx.settings
    if agg.avg_prompt_tokens < s.long_prompt_tokens or agg.input_tokens <= 0:
        return None
    cached_share = Decimal(agg.cached_input_tokens) / agg.input_tokens
    rates = entry.rates_for(int(agg.avg_prompt_tokens), ctx.at)
    if cached_share >= s.low_cache_share or rates.cached_input >= rates.input:
        return None
    target = s.target_cache_share
    if agg.repeated_prompt_share is not None:
        target = min(target, agg.repeated_prompt_share)
    if target <= cached_share:
        return None
    rate = ctx.fx(entry.currency, ctx.currency, ctx.at)
    if rate is None:
        return None
    more_cached = (target - cached_share) * agg.input_tokens
    per_period = more_cached * (rates.input - rates.cached_input) / MILLION * rate
    saving = _money(per_period * discount_factor(ctx.discounts.get(agg.tenant or "")), ctx)
    if saving < s.min_monthly_saving:
        return None
    if agg.repeated_prompt_share is None:
        assumption = f"{plain(target * 100)}% of input tokens could be read from cache (repetition not measured)"
    else:
        assumption = f"{plain(target * 100)}% of input tokens, at most the measured repeated share, from cache"
    evidence = _base_evidence(agg, ctx, entry) | {
        "cached_share": plain(round(cached_share, 4)),
        "repeated_prompt_share": None if agg.repeated_prompt_share is None else plain(agg.repeated_prompt_share),
        "assumption": assumption,
    }
    advice = (
        f"{agg.model} on {agg.provider} gets long prompts (avg {plain(round(agg.avg_prompt_tokens, 0))} tokens) but "
        f"only {plain(round(cached_share * 100, 1))}% of input is read from cache; put the fixed part of the "
        f"prompt first (and mark it cacheable where the provider needs that)"
    )
    return Recommendation("prompt_caching", agg.tenant, agg.provider, agg.model, advice, saving, ctx.currency, evidence)


def _cheaper_provider(
    agg: UsageAggregate, entry: PriceEntry, ctx: _Context, providers: Collection[str] | None
) -> Recommendation | None:
    now = _traffic_cost(entry, agg, ctx)
    if now is None:
        return None
    best: tuple[Decimal, PriceEntry] | None = None
    for provider in ctx.book.providers:
        if provider == entry.provider or (providers is not None and provider not in providers):
            continue
        other = next((e for n in entry.names if (e := ctx.book.entry_for(provider, n, ctx.at)) is not None), None)
        cost = None if other is None else _traffic_cost(other, agg, ctx)
        if other is not None and cost is not None and (best is None or cost < best[0]):
            best = (cost, other)
    if best is None:
        return None
    cost, other = best
    saving = _money(now - cost, ctx)
    if saving < ctx.settings.min_monthly_saving:
        return None
    evidence = _base_evidence(agg, ctx, entry) | {
        "alternative_provider": other.provider,
        "alternative_price_id": other.price_id,
        "alternative_prices_per_1m": _prices(other, ctx.at, agg.avg_prompt_tokens),
        "fx_rates": {
            c: plain(r) for c in {entry.currency, other.currency} if (r := ctx.fx(c, ctx.currency, ctx.at)) is not None
        },
    }
    advice = f"{other.provider} prices {other.model} lower than {agg.provider} does for this traffic"
    return Recommendation(
        "cheaper_provider", agg.tenant, agg.provider, agg.model, advice, saving, ctx.currency, evidence
    )


def recommend(
    aggregates: Sequence[UsageAggregate],
    book: PriceBook,
    *,
    at: datetime,
    window_days: Decimal | int,
    reporting_currency: str,
    settings: Settings | None = None,
    providers: Collection[str] | None = None,
    discounts: Mapping[str, Decimal] | None = None,
    fx: FxFunction | None = None,
) -> list[Recommendation]:
    """Every recommendation for the aggregates, biggest monthly saving first."""
    if Decimal(window_days) <= 0:
        raise ValueError("window_days must be positive")
    ctx = _Context(
        book,
        at,
        reporting_currency,
        fx or book.fx_rate,
        MONTH_DAYS / Decimal(window_days),
        settings or Settings(),
        discounts or {},
    )
    out: list[Recommendation] = []
    for agg in aggregates:
        entry = book.entry_for(agg.provider, agg.model, at)
        if entry is None or agg.requests < ctx.settings.min_requests:
            continue
        for found in (
            _smaller_model(agg, entry, ctx),
            _prompt_caching(agg, entry, ctx),
            _cheaper_provider(agg, entry, ctx, providers),
        ):
            if found is not None:
                out.append(found)
    return sorted(out, key=lambda r: (-r.monthly_saving, r.kind, r.tenant or "", r.provider, r.model))
