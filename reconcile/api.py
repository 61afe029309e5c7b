"""`GET /admin/reconcile`: a reconciliation report over HTTP, and the stored snapshots.

    GET /admin/reconcile?provider=openai|anthropic[&since=7d][&until=now][&by=model|project|api_key]
                        [&bucket_width=1d|1h][&tolerance=0.05][&offline=true][&snapshot=ID]
                        [&format=json|csv|table]
    GET /admin/reconcile/snapshots?provider=openai

JSON by default; CSV with `format=csv` or `Accept: text/csv`; `format=table` is the command's
terminal table as text. Every report sets the reconciliation gauges. Errors use OpenAI's error
format: 400 names the bad parameter, 404 a missing snapshot, 502 a provider that refused or
failed, 503 a missing admin key. Access control is the admin guard's, as for every /admin route.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import httpx
import orjson
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from reconcile.compare import LEVELS
from reconcile.errors import AdminKeyError, MissingAdminKey, ProviderAPIError, ReconcileError, SnapshotError
from reconcile.gateway_side import Query
from reconcile.http import Sleep
from reconcile.metrics import ReconcileGauges
from reconcile.render import FORMATS, render
from reconcile.service import Reconciler, Request
from reconcile.settings import BUCKET_WIDTHS, ReconcileSettings
from storage.params import flag
from storage.tabular import dumps
from storage.timerange import QueryError, parse_time

PARAMS = frozenset({"provider", "since", "until", "by", "bucket_width", "tolerance", "offline", "snapshot", "format"})
DEFAULT_SINCE = "7d"
VERDICT_HEADER = "x-meterway-reconcile-verdict"  # the overall verdict, whatever the format
_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "table": "text/plain; charset=utf-8"}


def routes(
    settings: ReconcileSettings,
    query: Query,
    gauges: ReconcileGauges | None = None,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
) -> list[Route]:
    api = ReconcileAPI(Reconciler(settings, query, env=env, transport=transport, sleep=sleep), gauges)
    return [
        Route("/admin/reconcile", api.report, methods=["GET"]),
        Route("/admin/reconcile/snapshots", api.snapshots, methods=["GET"]),
    ]


class ReconcileAPI:
    def __init__(self, reconciler: Reconciler, gauges: ReconcileGauges | None) -> None:
        self.reconciler = reconciler
        self.gauges = gauges

    async def report(self, request: HTTPRequest) -> Response:
        params = dict(request.query_params)
        try:
            fmt = params.get("format") or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
            if fmt not in FORMATS:
                raise QueryError("format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
            report = await self.reconciler.run(parse_request(params, self.reconciler.settings))
        except QueryError as exc:
            return error(400, exc.message, "invalid_parameter", exc.param)
        except SnapshotError as exc:
            return error(404, str(exc), "snapshot_not_found")
        except AdminKeyError as exc:
            return error(503 if isinstance(exc, MissingAdminKey) else 502, str(exc), "provider_admin_key")
        except ProviderAPIError as exc:
            return error(502, str(exc), "provider_error")
        except ReconcileError as exc:
            return error(400, str(exc), "invalid_request")
        if self.gauges is not None:
            self.gauges.record(report)
        headers = {VERDICT_HEADER: report.totals.verdict}
        return Response(render(report, fmt), media_type=_MEDIA[fmt], headers=headers)

    async def snapshots(self, request: HTTPRequest) -> Response:
        provider = request.query_params.get("provider", "")
        if provider not in self.reconciler.settings.providers:
            known = ", ".join(self.reconciler.settings.providers)
            return error(400, f"provider: expected one of {known}, got {provider!r}", "invalid_parameter", "provider")
        found = [info.as_dict() for info in self.reconciler.snapshots.list(provider)]
        return Response(dumps({"provider": provider, "snapshots": found}), media_type="application/json")


def parse_request(params: dict[str, str], settings: ReconcileSettings, now: datetime | None = None) -> Request:
    """Query parameters (or command-line options as strings) -> a validated Request; QueryError names the bad one."""
    for key in params:
        if key not in PARAMS:
            raise QueryError(key, f"unknown parameter (expected: {', '.join(sorted(PARAMS))})")
    now = now or datetime.now(UTC)
    provider = params.get("provider", "")
    if provider not in settings.providers:
        raise QueryError("provider", f"expected one of {', '.join(settings.providers)}, got {provider!r}")
    since = parse_time("since", params.get("since") or DEFAULT_SINCE, now)
    until = parse_time("until", params["until"], now) if params.get("until") else now
    if since >= until:
        raise QueryError("since", f"must be before until ({since.isoformat()} is not before {until.isoformat()})")
    by = params.get("by") or "model"
    if by not in LEVELS:
        raise QueryError("by", f"expected one of {', '.join(LEVELS)}, got {by!r}")
    width = params.get("bucket_width") or None
    if width is not None and width not in BUCKET_WIDTHS:
        raise QueryError("bucket_width", f"expected one of {', '.join(BUCKET_WIDTHS)}, got {width!r}")
    return Request(
        provider=provider, since=since, until=until, by=by, bucket_width=width,
        tolerance=_tolerance(params.get("tolerance")), offline=flag("offline", params.get("offline")),
        snapshot_id=params.get("snapshot") or None,
    )  # fmt: skip


def _tolerance(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise QueryError("tolerance", f"expected a fraction >= 0 like 0.05 (5%), got {text!r}")
    return value


def error(status: int, message: str, code: str, param: str | None = None) -> Response:
    kind = "invalid_request_error" if status < 500 else "api_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
