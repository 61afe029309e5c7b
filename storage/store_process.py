"""The store process of `meterway serve --workers N`: the one process that writes the store.

DuckDB allows one writing process per file, so the workers never open it. The supervisor
(gateway/supervisor.py) starts this process first; it opens the sink, loads whatever journal
segments are waiting (from an earlier run or a crash), then
  - loads, every flush interval, the segments the workers close (and those of workers that died),
    and runs retention and compaction, all through an ordinary loading `EventWriter`;
  - with budgets configured (and no DuckLake catalog to hold them), owns the gateway's one
    `BudgetLedger` and answers the workers' reservations (`governance.shared_ledger`), saving it
    to `<data dir>/budgets.json` about once a second and when it stops;
  - with rate limits configured, owns the one `RateLimiter` the workers take from
    (`governance.shared_rates`);
  - answers the storage API (`storage.api`, plus `GET /store/ready`) on a Unix socket that only
    the gateway's processes use; the workers forward `/admin/...` storage routes and
    `POST /v1/usage` to it, and other readers in a worker (`RemoteSink`) send their SELECTs to
    `POST /store/sql`.
It tells the supervisor it is ready over a pipe, and it stops when that pipe closes: after the
supervisor has stopped every worker (so their last segments are closed), or when the supervisor
died. It then loads everything left and exits 0. Stop signals are left to the supervisor, so a
Ctrl-C that reaches the whole process group does not stop the store before the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

import duckdb
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin import AdminGuard, admin_key
from gateway.config import Config
from gateway.governance_setup import store_ledger
from governance.budget_catch_up import catch_up
from governance.budget_store import JsonFileBudgetStore, save_changes
from governance.budgets import BudgetLedger
from governance.ratelimit import RateLimiter
from governance.shared_ledger import ledger_routes
from governance.shared_rates import rate_routes
from metrics.multiprocess import ENV
from storage.errors import StorageError
from storage.remote import ERROR_KIND, PICKLE, READY_PATH, SQL_PATH
from storage.residency import release_libraries
from storage.runtime import InlineStorage, inline_storage

log = logging.getLogger("meterway.store")


class _StoreServer(uvicorn.Server):
    """uvicorn without its signal handling: the supervisor decides when the store stops."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        log.debug("store process ignores signal %d; it stops when the supervisor says so", sig)


def run_store(config: Config, socket_path: str, conn: Connection) -> None:
    """Process entry point (spawned by the supervisor). Exits 2 when the store cannot be opened."""
    from gateway.cli import configure_logging

    configure_logging()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        asyncio.run(_serve(config, socket_path, conn))
    except StorageError as exc:
        conn.send(("error", str(exc)))
        sys.exit(2)


def store_app(storage: InlineStorage, config: Config, ledger: BudgetLedger | None = None) -> Starlette:
    async def ready(request: Request) -> Response:
        ok = await storage.ready() and not storage.writer.degraded
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def sql(request: Request) -> Response:
        statement, params = pickle.loads(await request.body())
        try:
            result = pickle.dumps(await asyncio.to_thread(_read_only, storage, statement, params))
        except (duckdb.Error, ValueError, pickle.PicklingError) as exc:
            kind = type(exc).__name__ if isinstance(exc, duckdb.Error) else "InvalidInputException"
            return Response(str(exc), status_code=400, media_type="text/plain", headers={ERROR_KIND: kind})
        return Response(result, media_type=PICKLE)

    return Starlette(
        routes=[
            *storage.routes(),
            Route(READY_PATH, ready),
            Route(SQL_PATH, sql, methods=["POST"]),
            *(ledger_routes(ledger) if ledger is not None else []),
            *(rate_routes(RateLimiter(config.governance.rate_limits)) if config.governance.rate_limits else []),
        ],
        middleware=[Middleware(AdminGuard, key=admin_key(config.raw))],
    )


async def _serve(config: Config, socket_path: str, conn: Connection) -> None:
    from gateway.costing import EventPricer

    pricer = EventPricer.from_config(config)
    # A re-price reloads the book here; the supervisor passes SIGHUP on so every worker reloads it too.
    storage = inline_storage(config, pricer, spread=lambda: os.kill(os.getppid(), signal.SIGHUP))
    await storage.start()  # loads what earlier runs left in the journal
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, pricer.reload)
    budgets = store_ledger(config, lambda a, b, at: pricer.pricer.book.fx_rate(a, b, at))
    if budgets is not None:  # the journal is loaded: spend the saved budget state missed is in it
        await asyncio.to_thread(catch_up, budgets[0], storage.api.sink.query)
    upkeep = asyncio.create_task(_keep_ledger(*budgets)) if budgets is not None else None
    app = store_app(storage, config, budgets[0] if budgets is not None else None)
    server = _StoreServer(
        uvicorn.Config(
            app, uds=socket_path, lifespan="off", access_log=False, log_level="warning",
            loop="uvloop", http="httptools", timeout_keep_alive=75, timeout_graceful_shutdown=30, server_header=False,
            date_header=False,
        )
    )  # fmt: skip
    mirror = asyncio.create_task(_mirror_writer_stats(storage))
    serving = asyncio.create_task(server.serve())
    for _ in range(3000):  # uvicorn has no "started" event to wait on; a bound of 30 s
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    if serving.done() or not server.started:
        server.should_exit = True
        await serving
        raise StorageError(f"the store process could not listen on {socket_path}")
    log.info("store process ready: %s", storage.api.sink.location)
    release_libraries()  # the library code starting up ran (see storage/residency.py)
    with contextlib.suppress(OSError):  # the supervisor may already be stopping
        conn.send(("ready", socket_path))
    await asyncio.to_thread(_wait_for_close, conn)
    server.should_exit = True
    await serving
    if upkeep is not None and budgets is not None:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await save_changes(budgets[0], budgets[1], -1)
    await storage.stop()  # every worker has stopped: load all that is left
    mirror.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await mirror
    log.info("store process stopped: every journal segment is loaded")


async def _mirror_writer_stats(storage: InlineStorage) -> None:
    """The store's writer is the only one that loads under `--workers`: its load errors, and the events it
    journals itself (`/v1/usage`), join the workers' writer metrics in the multiprocess folder, once a
    second and once more at the end."""
    if not os.environ.get(ENV):
        return
    from prometheus_client import CollectorRegistry

    from metrics.writer import WriterStatsMirror

    mirror = WriterStatsMirror(storage.writer.stats, CollectorRegistry())
    try:
        while True:
            mirror.sync()
            await asyncio.sleep(1.0)
    finally:
        mirror.sync()


async def _keep_ledger(ledger: BudgetLedger, store: JsonFileBudgetStore) -> None:
    saved = ledger.changes
    while True:
        await asyncio.sleep(1.0)
        try:
            ledger.expire()
            saved = await save_changes(ledger, store, saved)
        except Exception:  # upkeep must outlive any one failure
            log.exception("budget ledger upkeep failed")


def _read_only(storage: InlineStorage, statement: str, params: list[Any]) -> tuple[Any, list[tuple[Any, ...]]]:
    kinds = {s.type for s in duckdb.extract_statements(statement)}
    if kinds != {duckdb.StatementType.SELECT}:
        raise ValueError("only a single read-only statement (SELECT) may be run through the store process")
    with storage.api.sink.reader() as cur:
        cur.execute(statement, params)
        description = [(d[0], str(d[1]), *d[2:]) for d in cur.description or []]  # type names as text
        return description, cur.fetchall()


def _wait_for_close(conn: Connection) -> None:
    while True:
        try:
            conn.recv()
        except (EOFError, OSError):
            return
