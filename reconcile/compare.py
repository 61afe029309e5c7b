"""Joining provider data with the gateway's events into a `Report`: a pure function of its inputs.

Lines are keyed by (period, model, scope). `by` picks the scope: `model` (none), `project`
(OpenAI project, Anthropic workspace) or `api_key`. On the provider side the scope is what it
reports (`(default)` when it reports none); on the gateway side it is the scope configured for
each gateway provider (`(unmapped)` when none is). Provider costs are compared per line only where
their rows carry the line's scope and the periods are days; the totals line always compares them.

Each figure's difference is `gateway - provider`, relative to the provider's figure. A line
matches when every figure both sides report is within `tolerance` (a cost also when it is within
`cost_abs_tolerance`); otherwise the largest relative difference decides between gateway_under
and gateway_over (the provider reporting 0 where the gateway has some counts as the largest).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from reconcile.gateway_side import GatewayRow
from reconcile.model import METRICS, ProviderData
from reconcile.report import MATCH, OVER, UNDER, Difference, GatewayNotes, Line, Number, Report, Side
from reconcile.settings import Scope

LEVELS = ("model", "project", "api_key")
DEFAULT_SCOPE, UNMAPPED = "(default)", "(unmapped)"
Key = tuple[datetime, str | None, str | None]
_INFINITE = Decimal("Infinity")
PLACES = Decimal("0.000001")  # relative differences are given to 6 decimal places


@dataclass(frozen=True, slots=True)
class Options:
    by: str = "model"
    tolerance: Decimal = Decimal("0.05")
    cost_abs_tolerance: Decimal = Decimal("0.01")


def reconcile(
    data: ProviderData,
    gateway: Iterable[GatewayRow],
    scopes: Mapping[str, Scope],
    options: Options = Options(),
    snapshot: Mapping[str, object] | None = None,
    offline: bool = False,
) -> Report:
    if options.by not in LEVELS:
        raise ValueError(f"by: expected one of {', '.join(LEVELS)}, got {options.by!r}")
    gw_rows = list(gateway)
    lines: dict[Key, Line] = {}
    provider_keys: set[Key] = set()
    costs_per_line = data.bucket_width == "1d" and (options.by == "model" or options.by in data.cost_dimensions)

    def line(key: Key) -> Line:
        if key not in lines:
            lines[key] = Line(key[0], key[1], key[2], _provider_side(data, costs_per_line), Side(), GatewayNotes())
        return lines[key]

    for u in data.usage:
        key = (u.start, u.model, _scope(options.by, u.project, u.api_key))
        provider_keys.add(key)
        side = line(key).provider
        for metric in METRICS[:-1]:
            side.add(metric, getattr(u, metric))
    if costs_per_line:
        for c in data.costs:
            key = (c.start, c.model, _scope(options.by, c.project, c.api_key))
            provider_keys.add(key)
            line(key).provider.add("cost", c.amount)
    for g in gw_rows:
        scope = scopes.get(g.provider, Scope())
        key = (g.start, g.model, _gateway_scope(options.by, scope))
        target = line(key)
        for metric in METRICS:
            target.gateway.add(metric, getattr(g, metric))
        target.notes.merge(_notes(g))

    seen_models = {g.model for g in gw_rows if g.events}
    busy_periods = {g.start for g in gw_rows if g.events}
    mapped = {getattr(s, options.by) for s in scopes.values()} if options.by != "model" else set()
    for key, ln in lines.items():
        _judge(ln, options)
        ln.causes = _causes(ln, key in provider_keys, seen_models, busy_periods, mapped, options.by)

    totals = _totals(data, gw_rows, options)
    ordered = sorted(lines.values(), key=lambda ln: (ln.start or datetime.min, ln.model is None, ln.model or "",
                                                     ln.scope or ""))  # fmt: skip
    return Report(
        provider=data.provider, currency=data.currency, since=data.since, until=data.until,
        bucket_width=data.bucket_width, by=options.by, tolerance=options.tolerance,
        gateway_providers=sorted(scopes), snapshot=dict(snapshot or {}), offline=offline, lines=ordered,
        totals=totals, relative_difference=headline(totals), summary=_summary(ordered, totals),
    )  # fmt: skip


def headline(totals: Line) -> Decimal | None:
    """The report's one number: relative cost difference, else of input + output tokens."""
    p, g = totals.provider, totals.gateway
    if p.cost and g.cost is not None:
        return ((g.cost - p.cost) / p.cost).quantize(PLACES)
    p_tokens, g_tokens = (p.input_tokens or 0) + (p.output_tokens or 0), (g.input_tokens or 0) + (g.output_tokens or 0)
    return (Decimal(g_tokens - p_tokens) / p_tokens).quantize(PLACES) if p_tokens else None


def difference(gateway: Number | None, provider: Number | None) -> Difference:
    if gateway is None or provider is None:
        return Difference(None, None)
    absolute = gateway - provider
    if provider == 0:
        return Difference(absolute, Decimal(0) if absolute == 0 else None)
    return Difference(absolute, (Decimal(absolute) / Decimal(provider)).quantize(PLACES))


def _provider_side(data: ProviderData, with_cost: bool) -> Side:
    side = Side()
    for metric in METRICS:
        if metric not in data.reported or (metric == "cost" and not with_cost):
            setattr(side, metric, None)
    return side


def _scope(by: str, project: str | None, api_key: str | None) -> str | None:
    if by == "model":
        return None
    return (project if by == "project" else api_key) or DEFAULT_SCOPE


def _gateway_scope(by: str, scope: Scope) -> str | None:
    if by == "model":
        return None
    value: str | None = getattr(scope, by)
    return value or UNMAPPED


def _notes(g: GatewayRow) -> GatewayNotes:
    return GatewayNotes(
        events=g.events, total_tokens=g.total_tokens, estimated_requests=g.estimated_requests,
        estimated_tokens=g.estimated_tokens, unpriced_requests=g.unpriced_requests,
        failed_after_streaming=g.failed_after_streaming, other_currency_requests=g.other_currency_requests,
    )  # fmt: skip


def _judge(ln: Line, options: Options) -> None:
    ln.differences = {m: difference(ln.gateway.get(m), ln.provider.get(m)) for m in METRICS}
    worst, sign = Decimal(0), 0
    for metric, diff in ln.differences.items():
        if diff.absolute is None or diff.absolute == 0:
            continue
        if metric == "cost" and abs(Decimal(diff.absolute)) <= options.cost_abs_tolerance:
            continue
        score = abs(diff.relative) if diff.relative is not None else _INFINITE
        if score > worst:
            worst, sign = score, (1 if diff.absolute > 0 else -1)
    ln.verdict = MATCH if worst <= options.tolerance else (OVER if sign > 0 else UNDER)


def _causes(
    ln: Line, reported: bool, seen_models: set[str | None], busy: set[datetime], mapped: set[str | None], by: str
) -> list[str]:
    notes, causes = ln.notes, []
    if notes.estimated_requests:
        causes.append("estimated_usage")
    if notes.unpriced_requests:
        causes.append("unpriced_requests")
    if notes.failed_after_streaming:
        causes.append("failed_after_streaming")
    if notes.other_currency_requests:
        causes.append("other_currency")
    if reported:
        if ln.model is None:
            causes.append("cost_not_per_model")
        elif ln.model not in seen_models:
            causes.append("model_not_seen_by_gateway")
        if ln.start not in busy:
            causes.append("provider_only_day")
        if by != "model" and ln.scope not in mapped:
            causes.append("scope_not_via_gateway")
    elif notes.events:
        causes.append("not_reported_by_provider")
    if by != "model" and ln.scope == UNMAPPED:
        causes.append("gateway_scope_unmapped")
    return causes


def _totals(data: ProviderData, gw_rows: list[GatewayRow], options: Options) -> Line:
    totals = Line(None, None, None, _provider_side(data, True), Side(), GatewayNotes())
    for u in data.usage:
        for metric in METRICS[:-1]:
            totals.provider.add(metric, getattr(u, metric))
    for c in data.costs:
        totals.provider.add("cost", c.amount)
    for g in gw_rows:
        for metric in METRICS:
            totals.gateway.add(metric, getattr(g, metric))
        totals.notes.merge(_notes(g))
    _judge(totals, options)
    return totals


def _summary(lines: list[Line], totals: Line) -> dict[str, object]:
    verdicts = {v: sum(1 for ln in lines if ln.verdict == v) for v in (MATCH, UNDER, OVER)}
    unseen = sorted({ln.model for ln in lines if ln.model and "model_not_seen_by_gateway" in ln.causes})
    days = sorted({ln.start for ln in lines if ln.start and "provider_only_day" in ln.causes})
    return {
        "lines": verdicts,
        "models_not_seen_by_gateway": unseen,
        "provider_only_periods": days,
        "gateway_estimated_share": totals.notes.estimated_share,
        "gateway_unpriced_requests": totals.notes.unpriced_requests,
        "gateway_failed_after_streaming": totals.notes.failed_after_streaming,
    }
