"""The governance schedule's state in Postgres: one lease holder, marks that only move forward, anomalies kept once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from governance.anomaly import Anomaly
from governance.pg_ledger import conninfo
from governance.pg_schedule import PostgresAnomalyLog, PostgresLease, PostgresReportMarks
from tests.storage.postgres import Postgres, postgres_server
from tests.support.governance import wait_until

HOUR = datetime(2025, 6, 12, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def spike(tenant: str, hour: datetime = HOUR) -> Anomaly:
    return Anomaly(tenant=tenant, metric="spend", hour=hour, observed=Decimal(2), baseline_mean=Decimal("0.11"),
                   baseline_std=Decimal("0.01"), baseline=(Decimal("0.1"), Decimal("0.12")), z_score=Decimal("189"),
                   ratio=Decimal("18.182"), rules=("z_score", "multiplier"), unit="USD")  # fmt: skip


def test_one_lease_holder_and_a_holder_that_lost_its_session_lets_go(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("lease"))
    a, b = PostgresLease(dsn), PostgresLease(dsn)
    try:
        assert a.acquire() and a.acquire() and a.held
        assert not b.acquire() and not b.held
        a.release()
        assert b.acquire()
        assert not a.acquire()

        assert b._conn is not None
        pid = b._conn.info.backend_pid
        with psycopg.connect(dsn, autocommit=True) as admin:  # the database ends b's session (a restart, a failover)
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s"
            wait_until(lambda: bool(admin.execute(gone, [pid]).fetchone() == (True,)))
        assert a.acquire()  # the lock died with b's session
        assert not b.acquire() and not b.held  # b notices that it lost it, and cannot take it back
    finally:
        a.release()
        b.release()


def test_marks_are_shared_and_only_move_forward(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("marks"))
    one, two = PostgresReportMarks(dsn), PostgresReportMarks(dsn)
    try:
        one.load()
        assert one.get("day") is None
        one.set("day", HOUR)
        one.set("week", HOUR - timedelta(days=3))
        two.load()
        assert (two.get("day"), two.get("week")) == (HOUR, HOUR - timedelta(days=3))
        two.set("day", HOUR - timedelta(days=1))  # a late writer never moves a mark back
        one.load()
        assert one.get("day") == HOUR
    finally:
        one.close()
        two.close()


def test_anomalies_are_kept_once_with_their_evidence(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("anomalies"))
    log, other = PostgresAnomalyLog(dsn), PostgresAnomalyLog(dsn)
    try:
        assert log.load() == []
        log.append([spike("acme")], HOUR + timedelta(minutes=5))
        other.append([spike("acme"), spike("globex")], HOUR + timedelta(minutes=7))  # acme's is already stored
        stored = other.load()
        assert [(s.anomaly.tenant, s.detected_at) for s in stored] == [
            ("acme", HOUR + timedelta(minutes=5)),
            ("globex", HOUR + timedelta(minutes=7)),
        ]
        assert stored[0].anomaly == spike("acme")
    finally:
        log.close()
        other.close()
