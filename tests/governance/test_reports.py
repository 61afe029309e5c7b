"""Report and alert messages: text for people, JSON payloads with exact amounts, schedules in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from governance.anomaly import AnomalyRules, detect
from governance.budgets import BudgetLedger, Reservation
from governance.config import BudgetConfig, ReportSchedule
from governance.money import Money
from governance.reports import (
    BudgetLine,
    SpendSummary,
    anomaly_notification,
    daily_report,
    next_run,
    report_window,
    threshold_notification,
    weekly_report,
)

NOW = datetime(2025, 6, 11, 15, 30, tzinfo=UTC)  # a Wednesday


def summary(start: datetime, end: datetime) -> SpendSummary:
    return SpendSummary(
        start=start,
        end=end,
        currency="USD",
        total=Decimal("123.456"),
        requests=4200,
        tokens=9_000_000,
        previous_total=Decimal("100"),
        by_tenant=[("beta", Decimal("23.456")), ("acme", Decimal(100))],
        by_model=[("gpt-4o", Decimal(120)), ("qwen-plus", Decimal("3.456"))],
        budgets=[BudgetLine("acme-daily", Decimal(40), Decimal(50), "USD", datetime(2025, 6, 12, tzinfo=UTC))],
        anomalies=2,
        month_forecast=(Decimal(3000), Decimal(2800), Decimal(3300)),
    )


def test_daily_report() -> None:
    start, end = report_window("day", NOW)
    assert (start, end) == (datetime(2025, 6, 10, tzinfo=UTC), datetime(2025, 6, 11, tzinfo=UTC))
    note = daily_report(summary(start, end))
    assert note.event == "report.daily" and note.title == "Meterway daily spend, 2025-06-10"
    lines = note.text.splitlines()
    assert lines[0] == "Spend: 123.46 USD over 4200 requests and 9000000 tokens (+23.5% vs the day before)"
    assert "Top tenants: acme 100, beta 23.46" in lines
    assert "Budget acme-daily: 40 of 50 USD (80%), resets 2025-06-12T00:00:00Z" in lines
    assert "Month-end forecast: 3000 USD (range 2800-3300)" in lines and "Anomalies detected: 2" in lines
    p = note.payload
    assert p["total"] == "123.456" and p["change"] == "+23.5%" and p["start"] == "2025-06-10T00:00:00Z"
    assert p["by_tenant"][0] == {"tenant": "acme", "cost": "100"}
    assert p["month_forecast"] == {"expected": "3000", "low": "2800", "high": "3300"}


def test_weekly_report_covers_the_last_iso_week() -> None:
    start, end = report_window("week", NOW)
    assert (start, end) == (datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 6, 9, tzinfo=UTC))
    note = weekly_report(SpendSummary(start, end, "CNY", Decimal(10), 5, 100))
    assert note.event == "report.weekly" and note.title == "Meterway weekly spend, 2025-06-02 to 2025-06-08"
    assert note.text == "Spend: 10 CNY over 5 requests and 100 tokens"
    assert note.payload["previous_total"] is None and note.payload["change"] is None


def test_schedules() -> None:
    daily = ReportSchedule(at=time(8, 0))
    assert next_run(daily, NOW) == datetime(2025, 6, 12, 8, tzinfo=UTC)
    assert next_run(daily, NOW.replace(hour=7)) == datetime(2025, 6, 11, 8, tzinfo=UTC)
    weekly = ReportSchedule(at=time(8, 0), weekday=0)
    assert next_run(weekly, NOW) == datetime(2025, 6, 16, 8, tzinfo=UTC)
    monday_early = datetime(2025, 6, 16, 7, 59, tzinfo=UTC)
    assert next_run(weekly, monday_early) == datetime(2025, 6, 16, 8, tzinfo=UTC)
    assert next_run(weekly, monday_early + timedelta(minutes=2)) == datetime(2025, 6, 23, 8, tzinfo=UTC)


def test_threshold_and_anomaly_notifications() -> None:
    b = BudgetConfig("acme-daily", Decimal(10), "USD", "day", soft=(Decimal("0.8"),))
    ledger = BudgetLedger([b], lambda a, c, t: None, clock=lambda: NOW)
    r = ledger.reserve("r", [b], Money(Decimal(9), "USD"))
    assert isinstance(r, Reservation)
    (crossing,) = ledger.settle(r, Money(Decimal(9), "USD"))
    note = threshold_notification(crossing)
    assert note.event == "budget.threshold" and note.title == "Budget acme-daily passed 80%"
    assert note.payload["resets_at"] == "2025-06-12T00:00:00Z" and note.payload["spent"] == "9"

    hour = datetime(2025, 6, 11, 14, tzinfo=UTC)
    series = [(hour - timedelta(days=d), Decimal(2)) for d in range(1, 8)] + [(hour, Decimal(20))]
    (anomaly,) = detect(series, tenant="acme", metric="spend", rules=AnomalyRules(), unit="USD")
    note = anomaly_notification(anomaly)
    assert note.event == "anomaly" and note.payload["rules"] == ["multiplier"] and note.payload["ratio"] == "10"
    assert note.payload["baseline"] == ["2"] * 7 and "20 USD" in note.text
