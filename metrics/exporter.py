"""What the gateway holds for metrics: the recorder it feeds and the `/metrics` route it serves.

`MetricsExporter.build(section, currency=..., writer_stats=...)` reads the `metrics:` config, builds
the metrics on a fresh registry and picks the exposition: one process exposes that registry plus a
collector over the writer's stats; in prometheus-client multiprocess mode (PROMETHEUS_MULTIPROC_DIR
set) the metrics live in per-worker files and `/metrics` aggregates every worker's files, while a
background task mirrors this worker's writer stats into them (`start()`/`stop()` in the app's
lifespan). Rendering runs in a thread so a scrape never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import ConfigError
from metrics.config import MetricsConfig, parse_metrics_config
from metrics.definitions import ATTRIBUTION_LABELS, build_metrics
from metrics.multiprocess import exposition_registry, forget_dead_workers, multiproc_dir
from metrics.recorder import MetricsRecorder
from metrics.writer import WriterStatsCollector, WriterStatsMirror
from storage.event import UsageEvent
from storage.writer import WriterStats

log = logging.getLogger("meterway.metrics")


class MetricsExporter:
    def __init__(
        self,
        recorder: MetricsRecorder,
        registry: CollectorRegistry,
        mirror: WriterStatsMirror | None = None,
        multiproc: Path | None = None,
        sync_interval: float = 1.0,
        definitions: CollectorRegistry | None = None,
    ) -> None:
        self.recorder = recorder
        self.registry = registry  # what /metrics exposes
        # where other parts of the gateway define their metrics: the exposed registry itself, or in
        # multiprocess mode a private one (values reach /metrics through the files, and only there)
        self.definitions = definitions if definitions is not None else registry
        self.mirror = mirror
        self.multiproc = multiproc
        self.sync_interval = sync_interval
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, section: object, *, currency: str, writer_stats: WriterStats, env: Mapping[str, str] | None = None
    ) -> MetricsExporter:
        """The exporter for a `metrics:` config section; a bad section raises `ConfigError`."""
        problems: list[str] = []
        config = parse_metrics_config(section, problems)
        if problems:
            raise ConfigError(problems)
        path = multiproc_dir(env)
        metrics_registry = CollectorRegistry()
        metrics = build_metrics(metrics_registry, attribution=_attribution(config), naming=config.naming)
        recorder = MetricsRecorder(metrics, config, currency, shared=path)
        if path is None:
            metrics_registry.register(WriterStatsCollector(writer_stats))
            return cls(recorder, metrics_registry)
        # In multiprocess mode values go to this worker's files whatever registry holds the metrics;
        # only the files are exposed, so the in-process registry stays private.
        mirror = WriterStatsMirror(writer_stats, metrics_registry)
        return cls(recorder, exposition_registry(path), mirror, path, definitions=metrics_registry)

    def record(self, event: UsageEvent) -> None:
        """Record one event and publish it at once (the gateway records through `recorder` and lets
        the exporter publish before each scrape and every `sync_interval`)."""
        self.recorder.record(event)
        self.recorder.flush()

    def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
        """The exposition body and its headers, negotiated like prometheus-client's own handlers."""
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        headers = {"content-type": content_type}
        if gzip_accepted(accept_encoding):
            body = gzip.compress(body, compresslevel=6)
            headers["content-encoding"] = "gzip"
        return body, headers

    async def endpoint(self, request: Request) -> Response:
        self.sync()
        accept = request.headers.get("accept", "")
        body, headers = await asyncio.to_thread(self.render, accept, request.headers.get("accept-encoding", ""))
        return Response(body, headers=headers)

    def route(self) -> Route:
        return Route("/metrics", self.endpoint, methods=["GET"])

    def sync(self) -> None:
        """Publish the recorder's pending counts and mirror this worker's writer stats (the latter in
        multiprocess mode only). Runs on the event loop, the thread that records."""
        self.recorder.flush()
        if self.mirror is not None:
            self.mirror.sync()

    async def start(self) -> None:
        if self._task is not None:
            return
        self.sync()
        self._task = asyncio.create_task(self._sync_loop(), name="meterway-metrics-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sync()

    async def _sync_loop(self) -> None:
        while True:
            try:
                if self.multiproc is not None:
                    forget_dead_workers(self.multiproc)
                self.sync()
            except Exception:  # a metrics hiccup must never take the gateway down
                log.exception("syncing writer metrics failed")
            await asyncio.sleep(self.sync_interval)


def _attribution(config: MetricsConfig) -> tuple[str, ...]:
    return tuple(name for name in ATTRIBUTION_LABELS if getattr(config, name).enabled)
