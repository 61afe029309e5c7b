"""The governance schedule inside the gateway: anomaly checks, forecast gauges, daily and weekly spend reports.

One asyncio task, started and stopped with `Governance`. Each pass does what is due on its clock:

- every `alerts.anomaly.interval_seconds`: the anomalies among the last 24 hours and the month-end
  forecasts, read from the event store in a worker thread (never on the event loop). An anomaly not
  seen before is written to `<data dir>/anomalies.jsonl` first, then notified through the
  `Dispatcher`, counted in `meterway_anomalies_total{metric}` and logged; so each is notified at
  most once, across restarts too. The forecasts set `meterway_forecast_month_end{tenant,currency}`
  for everything (`tenant="__all__"`) and the `top_tenants` biggest tenants of the last 7 days.
- `alerts.daily_report` and `alerts.weekly_report`, at their UTC times: the spend of the last complete
  day or ISO week against the one before, through the same channels. `ReportMarks` keeps the last
  scheduled time handled, so a restart sends no report twice, and one that fell due while the gateway
  was down goes out when it is back (the latest one only).

Between passes the task sleeps until the next job is due, at most `max_wait` seconds so a jump of the
wall clock is noticed, or until `wake()`. With several workers only the holder of
`<data dir>/governance.lock` runs the jobs; a worker that takes the lease over reads the anomaly log
and the report marks afresh. DuckLake replicas keep the lease, the marks and the anomaly log in their
shared catalog database (governance/pg_schedule.py), so one replica runs the schedule for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry

from gateway.governance_insights import GovernanceInsights
from gateway.governance_setup import catalog_dsn, data_dir
from governance.anomaly import Anomaly, AnomalyRegistry
from governance.anomaly_log import AnomalyStore
from governance.budgets import BudgetStatus
from governance.config import AlertsConfig, ReportSchedule
from governance.forecast import MonthForecast
from governance.notify import Dispatcher
from governance.reports import (
    BudgetLine,
    SpendSummary,
    anomaly_notification,
    daily_report,
    next_run,
    report_window,
    weekly_report,
)
from governance.schedule_state import FileLease, Lease, Marks, ReportMarks
from metrics.definitions import InsightMetrics, build_insight_metrics

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("meterway.governance")
T = TypeVar("T")
Clock = Callable[[], datetime]
ALL = "__all__"
FORGET_AFTER = timedelta(days=2)  # older than any hour a check looks at again


def _now() -> datetime:
    return datetime.now(UTC)


def latest_fire(schedule: ReportSchedule, now: datetime) -> datetime:
    """The last time at or before `now` the schedule fired."""
    upcoming = next_run(schedule, now)
    return upcoming if upcoming == now else upcoming - timedelta(days=1 if schedule.weekday is None else 7)


class GovernanceJobs:
    def __init__(
        self,
        insights: Callable[[], GovernanceInsights],
        alerts: AlertsConfig,
        dispatcher: Dispatcher,
        anomaly_log: AnomalyStore,
        marks: Marks,
        metrics: InsightMetrics,
        budgets: Callable[[datetime], Awaitable[Sequence[BudgetStatus]]],
        lease: Lease,
        *,
        clock: Clock = _now,
        interval: float | None = None,
        max_wait: float = 60.0,
        top_tenants: int = 10,
    ) -> None:
        self.insights, self.alerts, self.dispatcher = insights, alerts, dispatcher
        self.anomaly_log, self.marks, self.metrics = anomaly_log, marks, metrics
        self.budgets, self.lease = budgets, lease
        self.clock = clock
        # seconds of `clock` between anomaly checks
        self.interval = float(alerts.anomaly.interval_seconds if interval is None else interval)
        self.max_wait, self.top_tenants = max_wait, top_tenants
        self.runs = 0  # passes finished, leading or not
        self._registry = AnomalyRegistry()
        self._leading = False
        self._next_check: datetime | None = None
        self._exported: set[tuple[str, str]] = set()
        self._reads: set[asyncio.Future[Any]] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="meterway-governance-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._reads:  # a read cut short still holds a store cursor: let it finish before storage closes
            await asyncio.wait(list(self._reads), timeout=30)
        self.lease.release()
        self.marks.close()
        self._leading = False

    def wake(self) -> None:
        """Run a pass now rather than at the next due time; callable from any thread."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                await self.run_pass()
            except Exception:  # the schedule must outlive any one failure
                log.exception("governance schedule: a pass failed")
            self.runs += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._seconds_to_next())

    async def run_pass(self) -> None:
        """Whatever is due now: the anomaly check and forecasts, then the reports."""
        if not await self._read(self.lease.acquire):
            self._leading = False
            return
        if not self._leading:
            await self._read(self._take_over)
            self._leading, self._next_check = True, None
        now = self.clock()
        if self._next_check is None or now >= self._next_check:
            self._next_check = now + timedelta(seconds=self.interval)  # a failed check waits its turn too
            await self._check(now)
        for period, schedule in self._schedules():
            await self._report(period, schedule, now)

    def _take_over(self) -> None:
        self._registry = AnomalyRegistry(stored.key for stored in self.anomaly_log.load())
        self.marks.load()

    def _schedules(self) -> list[tuple[str, ReportSchedule]]:
        both = (("day", self.alerts.daily_report), ("week", self.alerts.weekly_report))
        return [(period, schedule) for period, schedule in both if schedule.enabled]

    def _seconds_to_next(self) -> float:
        if not self._leading:
            return self.max_wait
        now = self.clock()
        due = [self._next_check or now]
        due += [next_run(schedule, now + timedelta(seconds=1)) for _, schedule in self._schedules()]
        return min(max((min(due) - now).total_seconds(), 0.0), self.max_wait)

    async def _read(self, work: Callable[[], T]) -> T:
        future: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(work))
        self._reads.add(future)
        future.add_done_callback(self._reads.discard)
        return await asyncio.shield(future)

    async def _check(self, now: datetime) -> None:
        insights = self.insights()
        detect = self.alerts.anomaly.enabled

        def read() -> tuple[list[Anomaly], tuple[dict[str, MonthForecast], MonthForecast]]:
            return (insights.detect(now) if detect else []), insights.forecasts(now, limit=self.top_tenants)

        found, forecasts = await self._read(read)
        self._registry.forget_before(now - FORGET_AFTER)
        fresh = self._registry.record(found)
        if fresh:
            try:
                await self._read(lambda: self.anomaly_log.append(fresh, now))
            except OSError:
                log.exception("anomalies: could not store %d new ones; they are retried at the next check", len(fresh))
                self._leading = False  # the next pass re-reads the log, which lacks them
                return
        for anomaly in fresh:
            log.warning("anomaly: %s", anomaly.message())
            self.metrics.anomalies.labels(anomaly.metric).inc()
            self.dispatcher.notify(anomaly_notification(anomaly))
        self._export(forecasts, insights.currency)

    def _export(self, forecasts: tuple[dict[str, MonthForecast], MonthForecast], currency: str) -> None:
        per_tenant, overall = forecasts
        gauge = self.metrics.forecast
        top = sorted(per_tenant.items(), key=lambda item: (-item[1].expected, item[0]))[: self.top_tenants]
        values = {(ALL, currency): overall.expected} | {(tenant, currency): f.expected for tenant, f in top}
        for labels, value in values.items():
            gauge.labels(*labels).set(float(value))
        for stale in self._exported - values.keys():
            with contextlib.suppress(KeyError):
                gauge.remove(*stale)
        self._exported = set(values)

    async def _report(self, period: str, schedule: ReportSchedule, now: datetime) -> None:
        fired = latest_fire(schedule, now)
        handled = self.marks.get(period)
        if handled is not None and fired <= handled:
            return
        if handled is None:  # first run on this data dir: reports start with the next scheduled time
            await self._read(lambda: self.marks.set(period, fired))
            return
        lines = [BudgetLine(s.budget.name, s.spent, s.budget.limit, s.budget.currency, s.resets_at)
                 for s in await self.budgets(fired)]  # fmt: skip
        start, end = report_window(period, fired)
        insights = self.insights()

        def read() -> SpendSummary:
            count = sum(1 for stored in self.anomaly_log.load() if start <= stored.anomaly.hour < end)
            return insights.spend_summary(period, fired, lines, count)

        summary = await self._read(read)
        notification = (daily_report if period == "day" else weekly_report)(summary)
        await self._read(lambda: self.marks.set(period, fired))  # marked before sending: never twice
        self.dispatcher.notify(notification)
        log.info("%s: %s", notification.title, notification.text.splitlines()[0])


def build_jobs(gw: Gateway) -> GovernanceJobs:
    """The schedule of a gateway, on its governance objects and its data dir."""
    governance = gw.governance
    assert governance is not None
    folder = data_dir(gw.config)
    exporter = gw.metrics
    # In multiprocess mode values reach the exporter through the worker's files, so the metrics stay
    # off its exposition registry (where they would be exposed twice).
    registry = exporter.definitions if exporter is not None else CollectorRegistry()
    dsn = catalog_dsn(gw.config)
    marks: Marks
    lease: Lease
    if dsn is not None:  # DuckLake replicas: one schedule across all of them
        from governance.pg_schedule import PostgresLease, PostgresReportMarks

        marks, lease = PostgresReportMarks(dsn), PostgresLease(dsn)
    else:
        marks, lease = ReportMarks(folder / "reports.json"), FileLease(folder / "governance.lock")
    return GovernanceJobs(
        lambda: GovernanceInsights.for_gateway(gw), gw.config.governance.alerts, governance.dispatcher,
        governance.anomalies, marks, build_insight_metrics(registry), governance.budget_status, lease,
    )  # fmt: skip
