"""The anomaly log: exact round trips, a torn last line, and the report schedule's last firing time."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.governance_jobs import latest_fire
from governance.anomaly import Anomaly
from governance.anomaly_log import AnomalyLog
from governance.config import ReportSchedule

HOUR = datetime(2025, 6, 12, 9, tzinfo=UTC)
SPIKE = Anomaly("acme", "spend", HOUR, Decimal(2), Decimal("0.11"), Decimal("0.0082"), (Decimal("0.11"),),
                Decimal("230.1"), None, ("z_score", "multiplier"), "USD")  # fmt: skip


def test_anomalies_come_back_exactly_and_a_torn_line_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = AnomalyLog(tmp_path / "anomalies.jsonl")
    assert log.load() == []
    log.append([SPIKE], HOUR)
    (stored,) = log.load()
    assert stored.anomaly == SPIKE and stored.detected_at == HOUR
    with log.path.open("ab") as f:
        f.write(b'{"tenant": "glo')  # a crash mid-write
    later = Anomaly("globex", "tokens", HOUR, Decimal(50_000), Decimal(1000), Decimal(0), (Decimal(1000),) * 3,
                    None, Decimal(50), ("multiplier",))  # fmt: skip
    log.append([later], HOUR)
    assert [s.anomaly for s in log.load()] == [SPIKE, later]
    assert "line 2: skipped" in caplog.text


@pytest.mark.parametrize(("now", "fired"), [
    (datetime(2025, 6, 12, 7, 59, tzinfo=UTC), datetime(2025, 6, 11, 8, tzinfo=UTC)),
    (datetime(2025, 6, 12, 8, 0, tzinfo=UTC), datetime(2025, 6, 12, 8, tzinfo=UTC)),
    (datetime(2025, 6, 12, 23, 0, tzinfo=UTC), datetime(2025, 6, 12, 8, tzinfo=UTC)),
])  # fmt: skip
def test_the_last_time_a_daily_report_fired(now: datetime, fired: datetime) -> None:
    assert latest_fire(ReportSchedule(at=time(8, 0)), now) == fired


def test_the_last_time_a_weekly_report_fired() -> None:
    monday = ReportSchedule(at=time(8, 0), weekday=0)
    assert latest_fire(monday, datetime(2025, 6, 12, 12, tzinfo=UTC)) == datetime(2025, 6, 9, 8, tzinfo=UTC)
    assert latest_fire(monday, datetime(2025, 6, 9, 7, tzinfo=UTC)) == datetime(2025, 6, 2, 8, tzinfo=UTC)
