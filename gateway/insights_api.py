"""Forecasts, anomalies and savings advice under /admin (behind the admin key once one is configured).

GET /admin/forecast          month-end spend overall and per tenant (expected, ~90% range, method), and
                             for each budget when it runs out at the current rate; `?tenant=` keeps one,
                             `?limit=` (default 100) the biggest tenants of the last 7 days
GET /admin/anomalies         the stored anomalies, newest hour first, each with its evidence;
                             `?tenant=`, `?since=` (an ISO time or an age like 7d), `?limit=` (default 100)
GET /admin/recommendations   savings advice from the last 7 days of traffic, each with its evidence and
                             monthly saving, biggest first; `?tenant=`

Money is a decimal string, times are ISO 8601 UTC with `Z`. A bad parameter gets a 400 in OpenAI's
error format naming it. The store is read in a worker thread; "now" is the governance schedule's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.dashboard.store_insights import ADVICE_DAYS
from gateway.governance_insights import BudgetOutlook, GovernanceInsights
from governance.anomaly_log import StoredAnomaly
from governance.forecast import MonthForecast
from governance.money import plain
from governance.periods import iso_z
from governance.recommend import Recommendation
from governance.reports import anomaly_notification
from storage.api import error
from storage.params import check_known, limit_of
from storage.tabular import dumps, jsonable
from storage.timerange import QueryError, parse_time

if TYPE_CHECKING:
    from gateway.app import Gateway

GatewayOf = Callable[[Request], "Gateway"]
PLACES = Decimal("0.000001")
HOUR = timedelta(hours=1)
MAX_TENANT = 200


def _money(value: Decimal) -> str:
    return plain(value.quantize(PLACES))


def _params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    items = request.query_params.multi_items()
    check_known((key for key, _ in items), allowed)
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            raise QueryError(key, "given more than once")
        params[key] = value
    tenant = params.get("tenant")
    if tenant is not None and not (0 < len(tenant.strip()) <= MAX_TENANT):
        raise QueryError("tenant", f"expected a tenant id of 1 to {MAX_TENANT} characters, got {tenant!r}")
    return params


def _now(gw: Gateway) -> datetime:
    jobs = gw.governance.jobs if gw.governance is not None else None
    return jobs.clock() if jobs is not None else datetime.now(UTC)


def _json(payload: Mapping[str, Any]) -> Response:
    return Response(dumps(payload), media_type="application/json")


def _month(f: MonthForecast) -> dict[str, Any]:
    return {"spent": _money(f.spent), "expected": _money(f.expected), "low": _money(f.low),
            "high": _money(f.high), "days_of_history": f.model.days}  # fmt: skip


def _budget(o: BudgetOutlook) -> dict[str, Any]:
    s = o.status
    return {
        "name": s.budget.name, "scope": s.budget.selector.describe(), "period": s.budget.period,
        "currency": s.budget.currency, "limit": plain(s.budget.limit), "spent": plain(s.spent),
        "reserved": plain(s.reserved), "resets_at": iso_z(s.resets_at),
        "runs_out_at": None if o.runs_out_at is None else iso_z(o.runs_out_at),
        "runs_out_before_reset": o.runs_out_at is not None,
        "expected_daily_spend": None if o.daily_rate is None else _money(o.daily_rate), "note": o.note,
    }  # fmt: skip


def _anomaly(stored: StoredAnomaly) -> dict[str, Any]:
    a = stored.anomaly
    return {**anomaly_notification(a).payload, "message": a.message(), "detected_at": iso_z(stored.detected_at)}


def _advice(r: Recommendation) -> dict[str, Any]:
    return {
        "kind": r.kind, "tenant": r.tenant, "provider": r.provider, "model": r.model, "advice": r.advice,
        "monthly_saving": plain(r.monthly_saving), "currency": r.currency, "evidence": jsonable(r.evidence),
    }  # fmt: skip


def routes(gateway_of: GatewayOf) -> list[Route]:
    async def forecast(request: Request) -> Response:
        gw = gateway_of(request)
        try:
            p = _params(request, frozenset({"tenant", "limit"}))
            tenant, limit = p.get("tenant"), limit_of(p, 100)
        except QueryError as exc:
            return error(400, exc.message, param=exc.param)
        now, insights = _now(gw), GovernanceInsights.for_gateway(gw)
        statuses = await gw.governance.budget_status(now) if gw.governance is not None else []
        if tenant is not None:
            statuses = [s for s in statuses if s.budget.selector.tenant == tenant]

        def read() -> tuple[dict[str, MonthForecast], MonthForecast, list[BudgetOutlook]]:
            per_tenant, overall = insights.forecasts(now, limit=limit, only=tenant)
            return per_tenant, overall, insights.budget_outlooks(statuses, now)

        per_tenant, overall, outlooks = await asyncio.to_thread(read)
        tenants = sorted(per_tenant.items(), key=lambda item: (-item[1].expected, item[0]))
        return _json({
            "as_of": iso_z(now), "currency": insights.currency, "month": overall.month.isoformat()[:7],
            "method": overall.method, "range": "about 90%", "overall": _month(overall),
            "tenants": [{"tenant": t, **_month(f)} for t, f in tenants],
            "budgets": [_budget(o) for o in outlooks],
        })  # fmt: skip

    async def anomalies(request: Request) -> Response:
        gw = gateway_of(request)
        try:
            p = _params(request, frozenset({"tenant", "since", "limit"}))
            since = parse_time("since", p["since"], _now(gw)) if "since" in p else None
            limit = limit_of(p, 100) or 100
        except QueryError as exc:
            return error(400, exc.message, param=exc.param)
        if gw.governance is None:
            return _json({"total": 0, "anomalies": []})
        try:
            stored = await asyncio.to_thread(gw.governance.anomalies.load)
        except OSError as exc:  # the file, or the replicas' catalog database
            return error(503, f"the stored anomalies cannot be read: {exc}", "anomalies_unavailable")
        tenant = p.get("tenant")
        kept = [s for s in stored if (tenant is None or s.anomaly.tenant == tenant)
                and (since is None or s.anomaly.hour + HOUR > since)]  # fmt: skip
        kept.sort(key=lambda s: (s.anomaly.hour, s.detected_at, s.anomaly.tenant, s.anomaly.metric), reverse=True)
        return _json({"total": len(kept), "anomalies": [_anomaly(s) for s in kept[:limit]]})

    async def recommendations(request: Request) -> Response:
        gw = gateway_of(request)
        try:
            tenant = _params(request, frozenset({"tenant"})).get("tenant")
        except QueryError as exc:
            return error(400, exc.message, param=exc.param)
        now, insights = _now(gw), GovernanceInsights.for_gateway(gw)
        found = await asyncio.to_thread(insights.advice, tenant, now)
        if found is None:
            return error(503, "no price book is loaded, so nothing can be priced", "price_book_unavailable")
        total = sum((r.monthly_saving for r in found), Decimal(0))
        return _json({
            "as_of": iso_z(now), "window_days": ADVICE_DAYS, "currency": insights.currency,
            "total_monthly_saving": plain(total), "recommendations": [_advice(r) for r in found],
        })  # fmt: skip

    return [
        Route("/admin/forecast", forecast, methods=["GET"]),
        Route("/admin/anomalies", anomalies, methods=["GET"]),
        Route("/admin/recommendations", recommendations, methods=["GET"]),
    ]
