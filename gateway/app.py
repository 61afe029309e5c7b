"""`create_app(config)`: the whole gateway built in one place, with no module-level state.

The app is a plain ASGI callable. Proxied traffic (`/v1/...` and `/{provider}/...`) goes straight
to the `Proxy`, skipping any framework work on the hot path; everything else (health, metrics,
model list, admin) is a small Starlette app. Startup opens the event writer (replaying any
journal left by a crash); shutdown closes upstream clients and flushes every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import dashboard, governance_api, insights_api, pricing_api
from gateway.admin import AdminGuard, is_admin
from gateway.attribution import AttributionReader
from gateway.config import Config
from gateway.costing import EventPricer
from gateway.governance_jobs import build_jobs
from gateway.governance_setup import Governance, build_governance
from gateway.providers.openai import error_body
from gateway.providers.registry import KINDS
from gateway.proxy import Message, Proxy, Receive, Scope, Send, send_json
from gateway.routing import ModelRouter
from gateway.upstream import AiohttpUpstream, HttpxUpstream, Upstream
from metrics.exporter import MetricsExporter
from reconcile import api as reconcile_api
from reconcile.metrics import build_reconcile_gauges
from reconcile.settings import settings_from_config
from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent
from storage.residency import release_libraries
from storage.runtime import StorageRuntime, build_storage
from storage.writer import EventWriter

log = logging.getLogger("meterway")
_CONTROL_PREFIXES = ("/admin", "/metrics", "/healthz", "/readyz", "/dashboard")
_CONTROL_V1 = ("/v1/models", "/v1/usage")


@dataclass(slots=True)
class Gateway:
    """Everything one gateway instance owns; handed to routes through `app.state`."""

    config: Config
    pricer: EventPricer
    writer: EventWriter
    sink: DuckDBSink
    proxy: Proxy
    upstreams: list[Upstream] = field(default_factory=list)
    admin_key: str | None = None
    metrics: MetricsExporter | None = None
    governance: Governance | None = None
    storage: StorageRuntime | None = None  # the writer's and sink's lifecycle and the storage routes


class MeterwayApp:
    def __init__(self, gateway: Gateway, control: Starlette) -> None:
        self.gateway = gateway
        self.control = control
        self._proxy = gateway.proxy
        self._providers = gateway.config.providers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") and path not in _CONTROL_V1 and not path.startswith("/v1/models/"):
                return await self._proxy(scope, receive, send)
            if not path.startswith(_CONTROL_PREFIXES) and path[1:].partition("/")[0] in self._providers:
                return await self._proxy(scope, receive, send)
            return await self.control(scope, receive, _with_request_id(send))
        await self.control(scope, receive, send)


def _with_request_id(send: Send) -> Send:
    """Control-plane responses carry `x-meterway-request-id` too."""
    request_id = os.urandom(12).hex().encode()

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"x-meterway-request-id", request_id)]
        await send(message)

    return wrapped


def create_app(config: Config, pricer: EventPricer | None = None) -> MeterwayApp:
    """The gateway for `config`; `pricer` is its price book when the caller has loaded it already."""
    pricer = pricer if pricer is not None else EventPricer.from_config(config)
    storage_runtime = build_storage(config, pricer)  # in this process, or a worker's view of the store process
    sink, writer = storage_runtime.sink, storage_runtime.writer
    default_upstream = AiohttpUpstream()
    upstreams: dict[str, Upstream] = {}
    for name, provider in config.providers.items():
        make_transport = getattr(KINDS[provider.kind], "transport", None)
        if make_transport is not None:  # a kind with its own httpx transport, e.g. the demo upstream
            upstreams[name] = HttpxUpstream(make_transport())

    metrics = MetricsExporter.build(
        config.raw.get("metrics"), currency=config.pricing.reporting_currency, writer_stats=writer.stats
    )
    record_metrics = metrics.recorder.record

    def submit(event: UsageEvent) -> None:
        writer.submit(event)
        try:
            record_metrics(event)
        except Exception:  # metrics must never fail a request
            log.exception("recording metrics for %s failed", event.request_id)

    governance = build_governance(config, pricer.pricer, metrics.definitions)
    proxy = Proxy(
        router=ModelRouter(config.models, config.providers),
        providers=config.providers,
        kinds=KINDS,
        attribution=AttributionReader(config.attribution),
        pricer=pricer,
        submit=submit,
        upstreams=upstreams,
        default_upstream=default_upstream,
        max_body_bytes=config.server.max_body_bytes,
        gate=governance.gate,
    )
    gateway = Gateway(
        config, pricer, writer, sink, proxy, [default_upstream, *upstreams.values()], _admin_key(config), metrics,
        governance, storage_runtime,
    )  # fmt: skip
    governance.jobs = build_jobs(gateway)
    control = Starlette(
        routes=[*_control_routes(), metrics.route(), *storage_runtime.routes(), *governance_api.routes(_governance),
                *insights_api.routes(_gateway),
                *dashboard.routes(_gateway), *reconcile_api.routes(
                    settings_from_config(config), sink.query, build_reconcile_gauges(metrics.definitions))],
        lifespan=_lifespan(gateway),
        middleware=[Middleware(AdminGuard, key=gateway.admin_key)],
    )  # fmt: skip
    control.state.gateway = gateway
    control.add_exception_handler(404, _not_found)
    control.add_exception_handler(405, _not_found)
    return MeterwayApp(gateway, control)


def _admin_key(config: Config) -> str | None:
    auth = config.raw.get("auth")
    name = auth.get("admin_key_env") if isinstance(auth, dict) else None
    return os.environ.get(name) or None if isinstance(name, str) else None


def _lifespan(gateway: Gateway) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await (gateway.storage or gateway.writer).start()
        if gateway.governance is not None:  # the journal is loaded: spend the budget state missed is in it
            await gateway.governance.catch_up(gateway.sink.query)
        if gateway.metrics is not None:
            await gateway.metrics.start()
        if gateway.governance is not None:
            await gateway.governance.start()
        # Everything built so far (price book, routes, metrics, DuckDB) lives as long as the process: keep it
        # out of the garbage collector's scans, and collect the young generation less often, so a request's
        # short-lived objects do not trigger full sweeps of long-lived ones.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        release_libraries()  # the library code starting up ran (see storage/residency.py)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, gateway.pricer.reload)
        try:
            yield
        finally:
            for upstream in gateway.upstreams:
                await upstream.close()
            if gateway.governance is not None:
                await gateway.governance.stop()
            await (gateway.storage or gateway.writer).stop()
            if gateway.metrics is not None:
                await gateway.metrics.stop()
            log.info("event writer flushed: %d events stored", gateway.writer.stats.loaded)

    return lifespan


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _governance(request: Request) -> Governance:
    governance = _gateway(request).governance
    assert governance is not None
    return governance


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    gw = _gateway(request)
    storage = await asyncio.to_thread(gw.sink.writable) and not gw.writer.degraded
    checks = {"price_book": gw.pricer.loaded(), "storage": storage, "journal": not gw.writer.journal_failing}
    return JSONResponse(
        {"ready": all(checks.values()), "checks": checks}, status_code=200 if all(checks.values()) else 503
    )


async def list_models(request: Request) -> Response:
    gw = _gateway(request)
    data = [
        {"id": r.name, "object": "model", "created": 0, "owned_by": r.provider}
        for r in gw.config.models
        if not any(ch in r.name for ch in "*?[")
    ]
    return JSONResponse({"object": "list", "data": data})


async def retrieve_model(request: Request) -> Response:
    """`GET /v1/models/{model}`: any name the gateway routes (exact, glob or `provider/model`)."""
    model = request.path_params["model"]
    found = _gateway(request).proxy.router.resolve(model)
    if found is None:
        message = f"The model '{model}' is not configured on this gateway"
        return Response(error_body(404, "model_not_found", message), status_code=404, media_type="application/json")
    return JSONResponse({"id": model, "object": "model", "created": 0, "owned_by": found[0].name})


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = f"no route for {request.method} {request.url.path}"
    code = "not_found" if status == 404 else "method_not_allowed"
    body = error_body(status, code, message)
    return Response(body, status_code=status, media_type="application/json")


async def admin_guard(request: Request) -> Response | None:
    """None when the caller may use /admin; else the 401 to answer. Open until an admin key is configured."""
    key = _gateway(request).admin_key
    if key is None:
        return None
    if is_admin(request.headers.get("authorization", ""), key):
        return None
    return Response(
        error_body(401, "invalid_admin_key", "this route needs the admin key: Authorization: Bearer <admin key>"),
        status_code=401, media_type="application/json",
    )  # fmt: skip


def _reload_elsewhere(request: Request) -> None:
    """After a worker of `serve --workers N` reloaded its price book: the supervisor passes SIGHUP on to
    every worker and the store process, so they all price with the same book."""
    if _gateway(request).config.storage.store_socket is not None:
        os.kill(os.getppid(), signal.SIGHUP)


def _control_routes() -> list[Route]:
    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/models", list_models),
        Route("/v1/models/{model:path}", retrieve_model),
        *pricing_api.routes(lambda request: _gateway(request).pricer, admin_guard, _reload_elsewhere),
    ]


__all__ = ["Gateway", "MeterwayApp", "create_app", "send_json"]
