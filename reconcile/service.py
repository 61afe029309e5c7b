"""Running a reconciliation: provider data (fetched and stored, or a stored snapshot) + gateway events -> Report.

`Reconciler` is built once with the settings, a gateway query (`DuckDBSink.query` or a DuckDB
connection) and, for tests, an httpx transport and a sleep function. `run()` aligns the range to
whole buckets, gets the provider data (online: fetch with the admin key, then save a snapshot;
`offline`: the latest snapshot covering the range; `snapshot_id`: that one), reads the gateway
side in a worker thread, and compares. `run_periodically()` keeps the metric fresh inside a
gateway: it reconciles a trailing window for every provider whose admin key is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx

from reconcile.compare import Options, reconcile
from reconcile.errors import ReconcileError
from reconcile.gateway_side import Query, gateway_rows
from reconcile.http import Sleep
from reconcile.metrics import ReconcileGauges
from reconcile.model import ProviderData
from reconcile.report import Report
from reconcile.settings import BUCKET_WIDTHS, ReconcileSettings
from reconcile.snapshots import SnapshotInfo, SnapshotStore
from reconcile.sources import SOURCES

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("meterway.reconcile")
_STEP = {"1d": timedelta(days=1), "1h": timedelta(hours=1)}


@dataclass(frozen=True, slots=True)
class Request:
    provider: str
    since: datetime
    until: datetime
    by: str = "model"
    bucket_width: str | None = None  # default: the settings'
    tolerance: Decimal | None = None  # default: the settings'
    offline: bool = False
    snapshot_id: str | None = None


class Reconciler:
    def __init__(
        self,
        settings: ReconcileSettings,
        query: Query | duckdb.DuckDBPyConnection,
        *,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.settings = settings
        self.query = query
        self.env = env
        self.transport = transport
        self.sleep = sleep
        self.snapshots = SnapshotStore(settings.snapshot_dir)

    async def fetch(
        self, provider: str, since: datetime, until: datetime, bucket_width: str
    ) -> tuple[SnapshotInfo, ProviderData]:
        """Ask the provider's reporting API, and store what it said as a snapshot."""
        settings = self.settings.provider(provider)
        env = os.environ if self.env is None else self.env
        source = SOURCES[provider](settings, env, self.settings.client, transport=self.transport, sleep=self.sleep)
        try:
            data = await source.fetch(since, until, bucket_width)
        finally:
            await source.aclose()
        return self.snapshots.save(data), data

    async def run(self, request: Request) -> Report:
        width = request.bucket_width or self.settings.bucket_width
        if width not in BUCKET_WIDTHS:
            raise ReconcileError(f"bucket_width: expected one of {', '.join(BUCKET_WIDTHS)}, got {width!r}")
        settings = self.settings.provider(request.provider)
        since, until = align(request.since, request.until, width)
        if request.snapshot_id:
            info, data = self.snapshots.load(request.provider, request.snapshot_id)
            if not info.covers(since, until, width):
                span = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
                raise ReconcileError(f"snapshot {info.id} does not cover {span} with {width} buckets")
            data = data.within(since, until)
        elif request.offline:
            info, data = self.snapshots.latest(request.provider, since, until, width)
        else:
            info, data = await self.fetch(request.provider, since, until, width)
        names = list(settings.gateway_providers)
        rows = await asyncio.to_thread(gateway_rows, self.query, names, since, until, width, data.currency)
        options = Options(
            by=request.by,
            tolerance=self.settings.tolerance if request.tolerance is None else request.tolerance,
            cost_abs_tolerance=self.settings.cost_abs_tolerance,
        )
        offline = request.offline or request.snapshot_id is not None
        return reconcile(data, rows, settings.gateway_providers, options, snapshot=info.as_dict(), offline=offline)


def align(since: datetime, until: datetime, bucket_width: str) -> tuple[datetime, datetime]:
    """The range widened to whole UTC buckets."""
    step = _STEP[bucket_width]
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    start = since.replace(minute=0, second=0, microsecond=0)
    if bucket_width == "1d":
        start = start.replace(hour=0)
    end = start
    while end < until:
        end += step
    if end == start:
        end += step
    return start, end


async def run_periodically(
    reconciler: Reconciler,
    gauges: ReconcileGauges,
    providers: Sequence[str] = ("openai", "anthropic"),
    interval: timedelta = timedelta(hours=6),
    lookback: timedelta = timedelta(days=7),
) -> None:
    """Reconcile the trailing `lookback` every `interval` for each provider with an admin key; until cancelled."""
    while True:
        env = os.environ if reconciler.env is None else reconciler.env
        for name in providers:
            if not env.get(reconciler.settings.provider(name).admin_key_env):
                continue
            now = datetime.now(UTC)
            try:
                report = await reconciler.run(Request(name, now - lookback, now))
            except ReconcileError as exc:
                log.warning("reconciliation with %s failed: %s", name, exc)
                continue
            gauges.record(report)
        await asyncio.sleep(interval.total_seconds())
