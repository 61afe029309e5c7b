"""The messages governance sends: daily and weekly spend reports (seed 002), budget thresholds, anomalies.

The numbers come in as a `SpendSummary` (the caller reads them from the rollups); `daily_report` and
`weekly_report` turn one into a `Notification` whose text reads well in Slack or a log and whose
payload carries the same figures as JSON (Decimals as strings). `report_window` says which UTC day
or ISO week a report sent at a time covers, and `next_run` when a schedule fires next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from governance.anomaly import Anomaly
from governance.budgets import ThresholdCrossing
from governance.config import ReportSchedule
from governance.money import plain
from governance.notify import Notification
from governance.periods import iso_z, period_start, utc

TOP = 5


@dataclass(frozen=True, slots=True)
class BudgetLine:
    name: str
    spent: Decimal
    limit: Decimal
    currency: str
    resets_at: datetime


@dataclass(frozen=True, slots=True)
class SpendSummary:
    start: datetime
    end: datetime
    currency: str
    total: Decimal
    requests: int
    tokens: int
    previous_total: Decimal | None = None  # the period before, for the change
    by_tenant: Sequence[tuple[str, Decimal]] = ()
    by_model: Sequence[tuple[str, Decimal]] = ()
    budgets: Sequence[BudgetLine] = ()
    anomalies: int = 0
    month_forecast: tuple[Decimal, Decimal, Decimal] | None = None  # (expected, low, high)


def report_window(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The last complete UTC day (`day`) or ISO week (`week`) before `now`."""
    end = period_start(period, now)
    return end - timedelta(days=1 if period == "day" else 7), end


def next_run(schedule: ReportSchedule, now: datetime) -> datetime:
    """The first time at or after `now` the schedule fires (daily, or on `schedule.weekday`)."""
    now = utc(now)
    at = now.replace(hour=schedule.at.hour, minute=schedule.at.minute, second=0, microsecond=0)
    if schedule.weekday is not None:
        at += timedelta(days=(schedule.weekday - at.weekday()) % 7)
    step = timedelta(days=7 if schedule.weekday is not None else 1)
    return at if at >= now else at + step


def _money(value: Decimal) -> str:
    return plain(round(value, 2))


def _change(summary: SpendSummary) -> str | None:
    if summary.previous_total is None or summary.previous_total == 0:
        return None
    pct = (summary.total - summary.previous_total) / summary.previous_total * 100
    return f"{'+' if pct >= 0 else ''}{plain(round(pct, 1))}%"


def _top(items: Sequence[tuple[str, Decimal]]) -> list[tuple[str, Decimal]]:
    return sorted(items, key=lambda item: (-item[1], item[0]))[:TOP]


def _lines(title: str, summary: SpendSummary, previous: str) -> list[str]:
    cur = summary.currency
    change = _change(summary)
    lines = [
        f"{title}: {_money(summary.total)} {cur} over {summary.requests} requests and {summary.tokens} tokens"
        + (f" ({change} vs the {previous})" if change else "")
    ]
    if summary.by_tenant:
        lines.append("Top tenants: " + ", ".join(f"{n} {_money(v)}" for n, v in _top(summary.by_tenant)))
    if summary.by_model:
        lines.append("Top models: " + ", ".join(f"{n} {_money(v)}" for n, v in _top(summary.by_model)))
    for b in summary.budgets:
        pct = plain(round(b.spent / b.limit * 100, 1)) if b.limit else "-"
        lines.append(
            f"Budget {b.name}: {_money(b.spent)} of {plain(b.limit)} {b.currency} ({pct}%), resets {iso_z(b.resets_at)}"
        )
    if summary.month_forecast is not None:
        expected, low, high = summary.month_forecast
        lines.append(f"Month-end forecast: {_money(expected)} {cur} (range {_money(low)}-{_money(high)})")
    if summary.anomalies:
        lines.append(f"Anomalies detected: {summary.anomalies}")
    return lines


def _payload(period: str, summary: SpendSummary) -> dict[str, Any]:
    return {
        "period": period,
        "start": iso_z(summary.start),
        "end": iso_z(summary.end),
        "currency": summary.currency,
        "total": plain(summary.total),
        "previous_total": None if summary.previous_total is None else plain(summary.previous_total),
        "change": _change(summary),
        "requests": summary.requests,
        "tokens": summary.tokens,
        "by_tenant": [{"tenant": n, "cost": plain(v)} for n, v in _top(summary.by_tenant)],
        "by_model": [{"model": n, "cost": plain(v)} for n, v in _top(summary.by_model)],
        "budgets": [
            {
                "name": b.name,
                "spent": plain(b.spent),
                "limit": plain(b.limit),
                "currency": b.currency,
                "resets_at": iso_z(b.resets_at),
            }
            for b in summary.budgets
        ],
        "anomalies": summary.anomalies,
        "month_forecast": None
        if summary.month_forecast is None
        else dict(zip(("expected", "low", "high"), (plain(v) for v in summary.month_forecast), strict=True)),
    }


def daily_report(summary: SpendSummary) -> Notification:
    title = f"Meterway daily spend, {summary.start.date().isoformat()}"
    text = "\n".join(_lines("Spend", summary, "day before"))
    return Notification("report.daily", title, text, _payload("day", summary))


def weekly_report(summary: SpendSummary) -> Notification:
    last = (summary.end - timedelta(days=1)).date().isoformat()
    title = f"Meterway weekly spend, {summary.start.date().isoformat()} to {last}"
    text = "\n".join(_lines("Spend", summary, "week before"))
    return Notification("report.weekly", title, text, _payload("week", summary))


def threshold_notification(crossing: ThresholdCrossing) -> Notification:
    """A budget's soft threshold was passed (once per budget, period and threshold)."""
    pct = plain(crossing.threshold * 100)
    payload = {
        "budget": crossing.budget,
        "scope": crossing.scope,
        "threshold": plain(crossing.threshold),
        "spent": plain(crossing.spent),
        "limit": plain(crossing.limit),
        "currency": crossing.currency,
        "period_start": iso_z(crossing.period_start),
        "resets_at": iso_z(crossing.resets_at),
    }
    return Notification("budget.threshold", f"Budget {crossing.budget} passed {pct}%", crossing.message(), payload)


def anomaly_notification(anomaly: Anomaly) -> Notification:
    payload = {
        "tenant": anomaly.tenant,
        "metric": anomaly.metric,
        "hour": iso_z(anomaly.hour),
        "observed": plain(anomaly.observed),
        "unit": anomaly.unit or "tokens",
        "baseline": [plain(v) for v in anomaly.baseline],
        "baseline_mean": plain(anomaly.baseline_mean),
        "baseline_std": plain(anomaly.baseline_std),
        "z_score": None if anomaly.z_score is None else plain(round(anomaly.z_score, 3)),
        "ratio": None if anomaly.ratio is None else plain(round(anomaly.ratio, 3)),
        "rules": list(anomaly.rules),
    }
    title = f"Anomaly: {anomaly.metric} of tenant {anomaly.tenant} at {iso_z(anomaly.hour)}"
    return Notification("anomaly", title, anomaly.message(), payload)
