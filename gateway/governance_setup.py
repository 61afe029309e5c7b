"""Building the governance pieces from config, and their background upkeep.

Keys live in `<data dir>/keys.json` (only HMAC digests), budget state in `<data dir>/budgets.json`
(saved about once a second while it changes, and at shutdown, so spend survives a restart), and
notification deliveries in `<data dir>/notifications.jsonl`. With several workers each process
enforces budgets and rate limits on its own traffic (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Gauge

from gateway.config import Config
from gateway.gate import Gate
from governance.budget_store import JsonFileBudgetStore, save_changes
from governance.budgets import BudgetLedger, ThresholdCrossing
from governance.keys import GatewayKeys, JsonFileKeyStore
from governance.notify import Dispatcher, JsonLinesDeliveryLog, build_channels
from governance.ratelimit import RateLimiter
from governance.reports import threshold_notification
from metrics.definitions import build_budget_gauges
from pricing.pricer import Pricer

log = logging.getLogger("meterway.governance")


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
    budget_store: JsonFileBudgetStore
    client: httpx.AsyncClient
    gauge: Gauge | None = None
    _saved_at: int = 0
    _task: asyncio.Task[None] | None = field(default=None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._upkeep(), name="meterway-governance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._saved_at = await save_changes(self.ledger, self.budget_store, self._saved_at)
        await self.dispatcher.drain()
        await self.client.aclose()

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.ledger.expire()
                self._saved_at = await save_changes(self.ledger, self.budget_store, self._saved_at)
                self.export_gauges()
            except Exception:  # upkeep must outlive any one failure
                log.exception("governance upkeep failed")

    def export_gauges(self) -> None:
        if self.gauge is None:
            return
        for status in self.ledger.status(datetime.now(UTC)):
            if status.budget.limit > 0:
                self.gauge.labels(status.budget.name).set(float(status.spent / status.budget.limit))

    def on_crossing(self, crossing: ThresholdCrossing) -> None:
        log.warning("budget threshold: %s", crossing.message)
        self.dispatcher.notify(threshold_notification(crossing))


def build_governance(config: Config, pricer: Pricer, registry: CollectorRegistry | None) -> Governance:
    gov = config.governance
    folder = data_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    budget_store = JsonFileBudgetStore(folder / "budgets.json")
    ledger = BudgetLedger(gov.budgets, lambda a, b, at: pricer.book.fx_rate(a, b, at), state=budget_store.load())
    keys = GatewayKeys(key_store(config))
    client = httpx.AsyncClient(timeout=10)
    dispatcher = Dispatcher(
        build_channels(gov.notifications, client), JsonLinesDeliveryLog(folder / "notifications.jsonl")
    )
    gauge = build_budget_gauges(registry) if gov.budgets and registry is not None else None
    holder: list[Governance] = []
    gate = Gate(gov, keys, ledger, RateLimiter(gov.rate_limits), lambda: pricer,
                notify=lambda crossing: holder[0].on_crossing(crossing))  # fmt: skip
    governance = Governance(gate, ledger, keys, dispatcher, budget_store, client, gauge)
    holder.append(governance)
    return governance
