"""The dashboard's routes, its access check, and its CSV downloads.

    GET /dashboard                                   the overview
    GET /dashboard/tenants/{tenant}                  one tenant
    GET /dashboard/export/{table}.csv                a section's numbers as CSV (same query string as the page)
    GET /dashboard/tenants/{tenant}/export/{table}.csv

`routes(gateway_of)` returns them for `create_app` to mount; `gateway_of(request)` gives the
`Gateway` they read. Pages are drawn in a worker thread on a reader cursor of the event store, so
the event loop never waits on DuckDB. Once an admin key is configured every route needs it, as a
Bearer token (scripts) or as the password of HTTP Basic auth (a browser asks for it; any user name).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.dashboard import data as page_data
from gateway.dashboard.html import error_page
from gateway.dashboard.insights import Insights, gather
from gateway.dashboard.pages import render
from gateway.dashboard.params import View, parse_view
from gateway.dashboard.store_insights import StoreInsights
from storage.errors import duckdb_error, out_of_memory, store_failure
from storage.tabular import to_csv
from storage.timerange import QueryError

if TYPE_CHECKING:
    from gateway.app import Gateway

TENANTS = "/dashboard/tenants/"
EXPORT_TAIL = re.compile(r"(?P<tenant>.+)/export/(?P<name>[^/]+)\.csv")
GatewayOf = Callable[[Request], "Gateway"]
InsightsFor = Callable[["Gateway"], Insights]
HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def authorized(request: Request, key: str | None) -> bool:
    if key is None:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer":
        secret = value.strip()
    elif scheme.lower() == "basic":
        try:
            secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(secret.encode(), key.encode())


def _unauthorized() -> Response:
    body = error_page(401, "The dashboard needs the admin key: give it as the password (any user name).")
    headers = {**HEADERS, "www-authenticate": 'Basic realm="Meterway dashboard", charset="UTF-8"'}
    return HTMLResponse(body, status_code=401, headers=headers)


def _bad(exc: QueryError) -> Response:
    return HTMLResponse(error_page(400, exc.message), status_code=400, headers=HEADERS)


def _failed(exc: Exception, gw: Gateway) -> Response:
    """A query DuckDB could not finish: 503 when it ran out of memory (a shorter window may fit)."""
    status = 503 if out_of_memory(exc) else 500
    message = store_failure(exc, ("storage.memory_limit", gw.sink.memory_limit))
    return HTMLResponse(error_page(status, message), status_code=status, headers=HEADERS)


class Dashboard:
    def __init__(self, gateway_of: GatewayOf, insights_for: InsightsFor) -> None:
        self.gateway_of = gateway_of
        self.insights_for = insights_for

    def _view(self, request: Request) -> View:
        tenant = request.path_params.get("tenant")
        return parse_view(request.query_params, tenant)

    async def tenant(self, request: Request) -> Response:
        """/dashboard/tenants/{tenant}[/export/{name}.csv], told apart on the path as sent: the pages' links
        percent-encode a tenant id's "/", so a tenant whose id ends in "/export/x.csv" still gets its page."""
        sent = request.scope.get("raw_path") or request.scope["path"].encode()
        rest = sent.decode("latin-1").partition("?")[0].removeprefix(TENANTS)
        if found := EXPORT_TAIL.fullmatch(rest):
            request.path_params.update(tenant=unquote(found["tenant"]), name=unquote(found["name"]))
            return await self.export(request)
        request.path_params["tenant"] = unquote(rest)
        return await self.page(request)

    async def page(self, request: Request) -> Response:
        gw = self.gateway_of(request)
        if not authorized(request, gw.admin_key):
            return _unauthorized()
        try:
            view = self._view(request)
            html = await asyncio.to_thread(self._draw, gw, view, datetime.now(UTC))
        except QueryError as exc:
            return _bad(exc)
        except Exception as exc:
            if not duckdb_error(exc):
                raise
            return _failed(exc, gw)
        return HTMLResponse(html, headers=HEADERS)

    def _draw(self, gw: Gateway, view: View, now: datetime) -> str:
        currency = gw.pricer.reporting_currency
        with gw.sink.reader() as cur:
            found = page_data.load(cur, view, now, currency)
        insights = gather(self.insights_for(gw), view.page_tenant, now)
        return render(found, insights, view)

    async def export(self, request: Request) -> Response:
        gw = self.gateway_of(request)
        if not authorized(request, gw.admin_key):
            return _unauthorized()
        name = request.path_params["name"]
        query = page_data.TABLES.get(name)
        if query is None:
            choices = ", ".join(f"{table}.csv" for table in page_data.TABLES)
            return HTMLResponse(error_page(404, f"no such download {name}.csv; there are {choices}"), status_code=404,
                                headers=HEADERS)  # fmt: skip
        try:
            view = self._view(request)
            text = await asyncio.to_thread(self._csv, gw, query, view, datetime.now(UTC))
        except QueryError as exc:
            return _bad(exc)
        except Exception as exc:
            if not duckdb_error(exc):
                raise
            return _failed(exc, gw)
        prefix = f"meterway-{view.page_tenant}-" if view.page_tenant else "meterway-"
        disposition = f'attachment; filename="{_safe(prefix + name)}.csv"'
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={**HEADERS, "content-disposition": disposition})  # fmt: skip

    def _csv(self, gw: Gateway, query: page_data.Query, view: View, now: datetime) -> str:
        with gw.sink.reader() as cur:
            return to_csv(query(cur, view, now, gw.pricer.reporting_currency), spreadsheet=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def routes(gateway_of: GatewayOf, insights_for: InsightsFor = StoreInsights.for_gateway) -> list[Route]:
    dash = Dashboard(gateway_of, insights_for)
    return [
        Route("/dashboard", dash.page, methods=["GET", "HEAD"]),
        Route("/dashboard/export/{name}.csv", dash.export, methods=["GET"]),
        Route(TENANTS + "{rest:path}", dash.tenant, methods=["GET", "HEAD"]),  # a tenant id may hold "/"
    ]
