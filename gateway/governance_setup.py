"""Building the governance pieces from config, and their background upkeep.

Keys live in `<data dir>/keys.json` (only HMAC digests), budget state in `<data dir>/budgets.json`
(saved about once a second while it changes, and at shutdown, so spend survives a restart), and
notification deliveries in `<data dir>/notifications.jsonl`, anomalies in `<data dir>/anomalies.jsonl`
(for DuckLake replicas, in the catalog database they share, as their budgets are).
With several workers the store process holds the one budget ledger and rate limiter; DuckLake replicas
share theirs, and the governance schedule's state, in the catalog database (see the README).
The anomaly checks, forecast gauges and spend reports (gateway/governance_jobs.py) start and stop here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from prometheus_client import CollectorRegistry, Gauge

from gateway.config import Config
from gateway.gate import Gate
from governance.anomaly_log import AnomalyLog, AnomalyStore
from governance.budget_catch_up import Query, catch_up
from governance.budget_store import BudgetStore, JsonFileBudgetStore, MemoryBudgetStore, save_changes
from governance.budgets import BudgetLedger, BudgetStatus, ThresholdCrossing
from governance.keys import GatewayKeys, JsonFileKeyStore
from governance.money import FxFunction
from governance.notify import Dispatcher, JsonLinesDeliveryLog, build_channels, posts
from governance.ratelimit import RateLimiter
from governance.reports import threshold_notification
from governance.shared_ledger import SharedLedger, StoreLedger
from governance.shared_rates import SharedRates, StoreRates
from metrics.definitions import build_budget_gauges
from pricing.pricer import Pricer

if TYPE_CHECKING:
    from gateway.governance_jobs import GovernanceJobs

log = logging.getLogger("meterway.governance")
NOTIFY_AT_STOP = 5.0  # seconds a stopping gateway waits for notifications still being delivered


def data_dir(config: Config) -> Path:
    return config.storage.path.parent


def key_store(config: Config) -> JsonFileKeyStore:
    return JsonFileKeyStore(data_dir(config) / "keys.json")


@dataclass(slots=True)
class Governance:
    gate: Gate
    ledger: BudgetLedger
    keys: GatewayKeys
    dispatcher: Dispatcher
    budget_store: BudgetStore
    client: httpx.AsyncClient | None  # for notifications that post; None when every channel logs
    anomalies: AnomalyStore
    gauge: Gauge | None = None
    jobs: GovernanceJobs | None = None
    shared: SharedLedger | None = None  # where budgets are reserved when this process is one of several
    _shared_status: list[BudgetStatus] = field(default_factory=list)  # its budgets, as of the last upkeep
    _saved_at: int = 0
    _task: asyncio.Task[None] | None = field(default=None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._upkeep(), name="meterway-governance")
        if self.jobs is not None:
            await self.jobs.start()

    async def catch_up(self, query: Query) -> None:
        """Charge the requests that ended after the budget state was last saved (a crash); before serving.
        A shared ledger (the store process's, or Postgres) keeps its own."""
        if self.shared is None:
            await asyncio.to_thread(catch_up, self.ledger, query)

    async def stop(self) -> None:
        if self.jobs is not None:
            await self.jobs.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._saved_at = await save_changes(self.ledger, self.budget_store, self._saved_at)
        if self.shared is not None:
            await self.shared.close()
        if self.gate.shared_rates is not None:
            await self.gate.shared_rates.close()
        if stopped := await self.dispatcher.drain(stop_after=NOTIFY_AT_STOP):
            log.warning("%d notification deliveries were still retrying at shutdown and are dropped "
                        "(see the delivery log)", stopped)  # fmt: skip
        if self.client is not None:
            await self.client.aclose()
        self.anomalies.close()

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.ledger.expire()
                self._saved_at = await save_changes(self.ledger, self.budget_store, self._saved_at)
                if self.shared is not None and self.ledger.budgets:
                    self._shared_status = await self.budget_status()
                await self.export_gauges()
            except Exception:  # upkeep must outlive any one failure
                log.exception("governance upkeep failed")

    async def budget_status(self, at: datetime | None = None) -> list[BudgetStatus]:
        """Every budget's spend in its period at `at` (default now), from the shared ledger or this process's."""
        now = at or datetime.now(UTC)
        shared = self.gate.shared
        if shared is not None:
            return await shared.status(self.ledger.budgets, now)
        return self.ledger.status(now)

    def status_now(self, at: datetime) -> list[BudgetStatus]:
        """`budget_status` for synchronous readers (the dashboard): where the ledger is shared, as the
        upkeep last read it, at most about a second ago."""
        return self.ledger.status(at) if self.shared is None else self._shared_status

    async def export_gauges(self) -> None:
        if self.gauge is None:
            return
        for status in self.status_now(datetime.now(UTC)):
            if status.budget.limit > 0:
                self.gauge.labels(status.budget.name).set(float(status.spent / status.budget.limit))

    def on_crossing(self, crossing: ThresholdCrossing) -> None:
        log.warning("budget threshold: %s", crossing.message())
        self.dispatcher.notify(threshold_notification(crossing))


def build_governance(config: Config, pricer: Pricer, registry: CollectorRegistry | None) -> Governance:
    gov = config.governance
    folder = data_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    fx = lambda a, b, at: pricer.book.fx_rate(a, b, at)  # noqa: E731
    shared = shared_ledger(config, fx)
    budget_store: BudgetStore = JsonFileBudgetStore(folder / "budgets.json") if shared is None else MemoryBudgetStore()
    ledger = BudgetLedger(gov.budgets, fx, state=budget_store.load())
    keys = GatewayKeys(key_store(config), providers=config.providers)
    client = httpx.AsyncClient(timeout=10) if posts(gov.notifications) else None
    dispatcher = Dispatcher(
        build_channels(gov.notifications, client), JsonLinesDeliveryLog(folder / "notifications.jsonl")
    )
    gauge = build_budget_gauges(registry) if gov.budgets and registry is not None else None
    holder: list[Governance] = []
    rates = shared_rates(config)
    gate = Gate(gov, keys, ledger, RateLimiter(gov.rate_limits), lambda: pricer,
                notify=lambda crossing: holder[0].on_crossing(crossing), shared=shared, shared_rates=rates)  # fmt: skip
    anomalies = anomaly_store(config)
    governance = Governance(gate, ledger, keys, dispatcher, budget_store, client, anomalies, gauge, shared=shared)
    holder.append(governance)
    return governance


def catalog_dsn(config: Config) -> str | None:
    """The catalog database DuckLake replicas share, where their budgets and schedule state live; else None."""
    if config.storage.backend == "ducklake" and config.storage.catalog:
        from governance.pg_ledger import conninfo

        return conninfo(config.storage.catalog)
    return None


def anomaly_store(config: Config) -> AnomalyStore:
    """The anomaly log: in the catalog database for DuckLake replicas, else `<data dir>/anomalies.jsonl`."""
    dsn = catalog_dsn(config)
    if dsn is not None:
        from governance.pg_schedule import PostgresAnomalyLog

        return PostgresAnomalyLog(dsn)
    return AnomalyLog(data_dir(config) / "anomalies.jsonl")


def shared_rates(config: Config) -> SharedRates | None:
    """Where rate limits are taken when this process is one of several: None for a single process."""
    limits = config.governance
    if not limits.rate_limits:
        return None
    dsn = catalog_dsn(config)
    if dsn is not None:
        from governance.pg_rates import PostgresRates

        return PostgresRates(dsn, lambda: limits.rate_limits)
    socket = config.storage.store_socket
    return StoreRates(socket) if socket is not None else None  # the store process's buckets


def shared_ledger(config: Config, fx: FxFunction) -> SharedLedger | None:
    """Where budgets are reserved when this process is one of several: None for a single process."""
    if not config.governance.budgets:
        return None
    dsn = catalog_dsn(config)
    if dsn is not None:
        from governance.pg_ledger import PostgresLedger

        ledger = config.governance
        return PostgresLedger(dsn, lambda: ledger.budgets, fx)
    if config.storage.store_socket is not None:
        return StoreLedger(config.storage.store_socket)
    return None


def store_ledger(config: Config, fx: FxFunction) -> tuple[BudgetLedger, JsonFileBudgetStore] | None:
    """The store process's ledger, which the workers reserve through; None when it has none to keep."""
    if not config.governance.budgets or config.storage.backend == "ducklake":
        return None
    folder = data_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    store = JsonFileBudgetStore(folder / "budgets.json")
    return BudgetLedger(config.governance.budgets, fx, state=store.load()), store
