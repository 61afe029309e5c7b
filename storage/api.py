"""The storage side of the HTTP API: report queries under /admin, and `POST /v1/usage` for external usage.

Every route answers JSON, or CSV when the request says `Accept: text/csv` (the route's main table).
Queries run in a worker thread on a reader cursor, so the event loop and event loading never wait
for a report. A bad parameter is a 400 in OpenAI's error format naming the parameter. Access
control is not here: the admin guard (gateway/admin.py) wraps every route.

    GET  /admin/summary                      totals and breakdowns (all tenants)
    GET  /admin/tenants/{id}/summary         the same for one tenant (seed 004's shape)
    GET  /admin/tenants/{id}/daily           one tenant's daily series
    GET  /admin/daily                        daily series
    GET  /admin/top-tenants                  tenants by cost
    GET  /admin/costs/{by}                   by tenant|feature|model|provider|hour|day|month
    GET  /admin/tokens/hourly                input vs output tokens per hour
    GET  /admin/events                       recent events, filtered, paged by cursor
    GET  /admin/events/{request_id}          one event
    GET  /admin/bill?month=YYYY-MM           per-tenant monthly billing
    GET  /admin/export?format=csv|parquet    raw events as a file
    POST /admin/reprice                      re-price a range with the (reloaded) price book
    GET  /admin/storage                      writer and schema status
    POST /v1/usage                           usage metered elsewhere
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway.costing import EventPricer
from storage import queries
from storage.duckdb_sink import DuckDBSink
from storage.errors import StorageError, duckdb_error, out_of_memory, store_failure
from storage.export import FORMATS, MEDIA_TYPES, export_events
from storage.ingest import UsageIngestor
from storage.params import FILTERS, RANGE, check_known, filters_of, flag, limit_of, range_of, span_for
from storage.reprice import SentUpstream, reprice
from storage.schema import CURRENT_VERSION, EVENTS
from storage.tabular import Table, dumps, to_csv
from storage.timerange import QueryError, TimeRange, parse_month
from storage.writer import EventWriter

MAX_RECORDS = 10_000
# (path, handler, methods): also what a gateway worker forwards to the store process (storage/remote.py)
ROUTES: tuple[tuple[str, str, list[str] | None], ...] = (
    ("/admin/summary", "summary", None),
    ("/admin/tenants/{tenant:path}/summary", "summary", None),  # a tenant id may hold "/"
    ("/admin/tenants/{tenant:path}/daily", "daily", None),
    ("/admin/daily", "daily", None),
    ("/admin/top-tenants", "top_tenants", None),
    ("/admin/costs/{by}", "costs", None),
    ("/admin/tokens/hourly", "tokens", None),
    ("/admin/events", "events", None),
    ("/admin/events/{request_id}", "event", None),
    ("/admin/bill", "bill", None),
    ("/admin/export", "export", None),
    ("/admin/reprice", "reprice", ["POST"]),
    ("/admin/storage", "status", None),
    ("/v1/usage", "ingest", ["POST"]),
)
Work = Callable[[dict[str, str], Any], tuple[Any, Table | None]]


def error(status: int, message: str, code: str = "invalid_parameter", param: str | None = None) -> Response:
    kind = "invalid_request_error" if status < 500 else "api_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def failed(exc: BaseException, limit: tuple[str, str | None]) -> Response:
    """A DuckDB error in the admin API's format: 503 when it ran out of memory (a smaller range may fit)."""
    if out_of_memory(exc):
        return error(503, store_failure(exc, limit), "store_out_of_memory")
    return error(500, store_failure(exc, limit), "store_error")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json")


class StorageAPI:
    def __init__(
        self,
        sink: DuckDBSink,
        writer: EventWriter,
        pricer: EventPricer,
        price_as: Mapping[str, str],
        sent_upstream: SentUpstream | None = None,
        spread: Callable[[], None] | None = None,
    ) -> None:
        """`spread`: called after a re-price reloaded the price book, so the other processes of
        `serve --workers N` reload it too and price new requests as the re-priced ones were."""
        self.sink = sink
        self.writer = writer
        self.pricer = pricer
        self.price_as = dict(price_as)
        self.sent_upstream = sent_upstream
        self.spread = spread

    def routes(self) -> list[Route]:
        return [Route(path, getattr(self, name), methods=methods) for path, name, methods in ROUTES]

    @property
    def reporting_currency(self) -> str:
        return self.pricer.reporting_currency

    async def _answer(self, request: Request, allowed: frozenset[str], work: Work) -> Response:
        try:
            params = _params(request, allowed)
            payload, table = await asyncio.to_thread(self._read, work, params)
        except QueryError as exc:
            return error(400, exc.message, param=exc.param)
        except Exception as exc:
            if not duckdb_error(exc):
                raise
            return failed(exc, ("storage.memory_limit", self.sink.memory_limit))
        if payload is None:
            return error(404, f"no event with request id {request.path_params.get('request_id')!r}", "not_found")
        if table is not None and "text/csv" in request.headers.get("accept", ""):
            return Response(to_csv(table), media_type="text/csv; charset=utf-8")
        return _json(payload)

    def _read(self, work: Work, params: dict[str, str]) -> tuple[Any, Table | None]:
        with self.sink.reader() as cur:
            return work(params, cur)

    async def summary(self, request: Request) -> Response:
        tenant = request.path_params.get("tenant")

        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            filters = filters_of(p) if tenant is None else queries.Filters(tenant=tenant)
            data = queries.summary(cur, range_of(p), filters, self.reporting_currency)
            return data, queries.summary_table(data)

        return await self._answer(request, RANGE | (FILTERS if tenant is None else frozenset()), work)

    async def daily(self, request: Request) -> Response:
        tenant = request.path_params.get("tenant")

        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            filters = filters_of(p, tenant)
            rng = range_of(p, timedelta(days=30))
            table = queries.costs_by(cur, "day", rng, filters)
            return _table_payload(rng, table), table

        return await self._answer(request, RANGE | (FILTERS if tenant is None else FILTERS - {"tenant"}), work)

    async def top_tenants(self, request: Request) -> Response:
        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            rng = range_of(p, timedelta(days=7))
            table = queries.costs_by(cur, "tenant", rng, filters_of(p), limit_of(p, 10))
            return _table_payload(rng, table), table

        return await self._answer(request, RANGE | FILTERS | {"limit"}, work)

    async def costs(self, request: Request) -> Response:
        by = request.path_params["by"]

        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            rng = range_of(p, span_for(by))
            table = queries.costs_by(cur, by, rng, filters_of(p), limit_of(p, None))
            return _table_payload(rng, table), table

        return await self._answer(request, RANGE | FILTERS | {"limit"}, work)

    async def tokens(self, request: Request) -> Response:
        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            rng = range_of(p, timedelta(hours=72))
            table = queries.token_trend(cur, rng, filters_of(p), self.reporting_currency)
            return _table_payload(rng, table) | {"reporting_currency": self.reporting_currency}, table

        return await self._answer(request, RANGE | FILTERS, work)

    async def events(self, request: Request) -> Response:
        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            rng = range_of(p, exact=True)
            q = queries.EventQuery(rng, filters_of(p), p.get("status"), limit_of(p, 50) or 50, p.get("cursor"))
            table, cursor = queries.events(cur, q)
            return _table_payload(rng, table) | {"next_cursor": cursor}, table

        return await self._answer(request, RANGE | FILTERS | {"status", "limit", "cursor"}, work)

    async def event(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]
        return await self._answer(request, frozenset(), lambda p, cur: (queries.event(cur, request_id), None))

    async def bill(self, request: Request) -> Response:
        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            if "month" not in p:
                raise QueryError("month", "required, like 2025-03")
            data = queries.bill(cur, parse_month(p["month"]), self.reporting_currency)
            return data, queries.bill_table(data)

        return await self._answer(request, frozenset({"month"}), work)

    async def export(self, request: Request) -> Response:
        try:
            p = _params(request, RANGE | {"format"})
            fmt = p.get("format", "csv")
            if fmt not in FORMATS:
                raise QueryError("format", f"expected csv or parquet, got {fmt!r}")
            rng = range_of(p, exact=True)
        except QueryError as exc:
            return error(400, exc.message, param=exc.param)
        fd, name = tempfile.mkstemp(prefix="meterway-export-", suffix=f".{fmt}")
        os.close(fd)
        path = Path(name)
        try:
            count = await asyncio.to_thread(export_events, self.sink, rng, fmt, path)
        except BaseException as exc:
            os.unlink(name)
            if duckdb_error(exc):
                return failed(exc, self._work_limit)
            raise
        return FileResponse(
            path, media_type=MEDIA_TYPES[fmt], filename=f"meterway-events.{fmt}",
            headers={"x-meterway-rows": str(count)}, background=BackgroundTask(path.unlink),
        )  # fmt: skip

    async def reprice(self, request: Request) -> Response:
        try:
            p = _params(request, RANGE | {"dry_run"})
            p |= await _body_params(request, RANGE | {"dry_run"})
            if "since" not in p:
                raise QueryError("since", "required: the start of the range to re-price")
            rng = range_of(p, exact=True)
            dry = flag("dry_run", p.get("dry_run"))
        except QueryError as exc:
            return error(400, exc.message, param=exc.param)
        ok, message = await asyncio.to_thread(self.pricer.reload)
        if not ok:
            return error(409, f"the price book does not load, nothing was re-priced: {message}", "invalid_price_book")
        if self.spread is not None:
            self.spread()
        try:
            result = await asyncio.to_thread(
                reprice, self.sink, self.pricer, rng, price_as=self.price_as, sent_upstream=self.sent_upstream,
                book_version=self.pricer.pricer.version, dry_run=dry,
            )  # fmt: skip
        except StorageError as exc:  # a shared lake held by another replica's maintenance for too long
            return error(409, str(exc), "store_busy")
        except Exception as exc:
            if not duckdb_error(exc):
                raise
            return failed(exc, self._work_limit)
        return _json(result.as_dict())

    @property
    def _work_limit(self) -> tuple[str, str | None]:
        return "storage.work_memory_limit", self.sink.work_memory_limit

    async def status(self, request: Request) -> Response:
        def work(p: dict[str, str], cur: Any) -> tuple[Any, Table | None]:
            row = cur.execute(f"SELECT count(*), min(ts), max(ts) FROM {EVENTS}").fetchone()
            limit = cur.execute("SELECT current_setting('memory_limit')").fetchone()
            return {
                "schema_version": CURRENT_VERSION, "path": self.sink.location, "memory_limit": limit[0],
                "retention_days": self.sink.retention_days, "degraded": self.writer.degraded,
                "writer": asdict(self.writer.stats), "events": {"stored": row[0], "oldest": row[1], "newest": row[2]},
            }, None  # fmt: skip

        return await self._answer(request, frozenset(), work)

    async def ingest(self, request: Request) -> Response:
        """Usage metered elsewhere: journaled like gateway events before the answer, rejected records listed."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, f"request body is not valid JSON: {exc}", "invalid_json")
        records = body.get("records") if isinstance(body, dict) and "records" in body else body
        records = [records] if isinstance(records, dict) else records
        if not isinstance(records, list) or not records:
            return error(400, 'expected a usage record, a list of them, or {"records": [...]}', "invalid_body")
        if len(records) > MAX_RECORDS:
            return error(413, f"at most {MAX_RECORDS} records per request, got {len(records)}", "too_many_records")
        ingestor = UsageIngestor(self.pricer, self.price_as, not_before=self.sink.watermark)
        batch = await asyncio.to_thread(ingestor.build, list(enumerate(records)))  # pricing stays off the loop
        if batch.events:
            try:
                self.writer.submit_records(batch.events)
            except OSError as exc:
                return error(503, f"the usage records could not be journaled: {exc}", "journal_unavailable")
        rejected = [{"index": r.where, "error": r.message} for r in batch.rejected]
        payload = {"accepted": len(batch.events), "request_ids": [e.request_id for e in batch.events],
                   "rejected": rejected}  # fmt: skip
        if not batch.events:
            body = orjson.loads(error(400, f"no record accepted; first problem: {rejected[0]['error']}",
                                      "invalid_usage").body)  # fmt: skip
            return _json(body | payload, status=400)
        return _json(payload)


async def _body_params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise QueryError("body", 'expected a JSON object like {"since": "2025-03-01"}') from None
    if not isinstance(body, dict):
        raise QueryError("body", "expected a JSON object")
    for key in body:
        if key not in allowed:
            raise QueryError(key, f"unknown field (expected: {', '.join(sorted(allowed))})")
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.items()}


def _params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    check_known(request.query_params, allowed)
    return dict(request.query_params)


def _table_payload(rng: TimeRange, table: Table) -> dict[str, Any]:
    return {**rng.as_dict(), "data": table.records()}
