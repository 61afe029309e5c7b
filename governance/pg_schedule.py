"""The governance schedule's state in Postgres, for DuckLake replicas that share a catalog database.

Replicas on different machines have no data dir in common, so the local `governance.lock`,
`reports.json` and `anomalies.jsonl` would let every replica run the schedule: each would send the
daily report and notify every anomaly. With `storage.backend: ducklake` the three live in the
catalog database instead:

    PostgresLease        a session advisory lock, held by one open connection: the replica holding
                         it runs the schedule; the lock dies with the connection (a replica that
                         stops, crashes or loses the database lets go), and another replica takes it
                         at its next pass
    PostgresReportMarks  meterway_report_marks (period) -> the last scheduled time handled
    PostgresAnomalyLog   meterway_anomalies (tenant, metric, hour) -> the anomaly and its evidence

A replica taking the lease over reads the marks and anomalies its predecessor wrote, so a report or
an anomaly goes out once across all replicas, as it does across a single gateway's restarts. The
calls block (each is one short statement), so the schedule makes them from a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from governance.anomaly import Anomaly
from governance.anomaly_log import StoredAnomaly, from_document, to_document
from governance.pg_pool import SCHEDULE_LEASE_LOCK, SCHEDULE_SCHEMA_LOCK

log = logging.getLogger("meterway.governance")
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meterway_report_marks (
    period text PRIMARY KEY,
    fired_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS meterway_anomalies (
    tenant text NOT NULL,
    metric text NOT NULL,
    hour timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    document jsonb NOT NULL,
    PRIMARY KEY (tenant, metric, hour)
);
"""
CONNECT_TIMEOUT = 5  # seconds


class CatalogUnavailable(OSError):
    """The catalog database did not answer, or failed: an I/O failure like a data dir's (the schedule
    treats both alike, and retries at its next pass)."""


class _Database:
    """One lazily opened connection to the catalog database, reopened once when it has gone away."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # the schedule's thread and the admin API's share the connection

    def run(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                try:
                    conn = self._conn if self._conn is not None and not self._conn.closed else self._open()
                    with conn.transaction(), conn.cursor() as cur:
                        return work(cur)
                except psycopg.OperationalError as exc:
                    self.close()
                    if attempt == 2:
                        raise CatalogUnavailable(f"the catalog database does not answer: {exc}") from None
                except psycopg.Error as exc:
                    raise CatalogUnavailable(f"the catalog database failed: {exc}") from None
            raise AssertionError("unreachable")

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULE_SCHEMA_LOCK])  # replicas starting together
            conn.execute(SCHEMA)
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresReportMarks:
    """`ReportMarks` shared by the replicas: per report period, the last scheduled time handled."""

    def __init__(self, dsn: str) -> None:
        self._db = _Database(dsn)
        self._marks: dict[str, datetime] = {}

    def load(self) -> None:
        rows = self._db.run(lambda cur: cur.execute("SELECT period, fired_at FROM meterway_report_marks").fetchall())
        self._marks = {str(period): fired_at for period, fired_at in rows}

    def get(self, period: str) -> datetime | None:
        return self._marks.get(period)

    def set(self, period: str, fired_at: datetime) -> None:
        self._db.run(
            lambda cur: cur.execute(
                "INSERT INTO meterway_report_marks (period, fired_at) VALUES (%s, %s) ON CONFLICT (period) "
                "DO UPDATE SET fired_at = greatest(meterway_report_marks.fired_at, excluded.fired_at)",
                [period, fired_at],
            )
        )
        self._marks[period] = fired_at

    def close(self) -> None:
        self._db.close()


class PostgresAnomalyLog:
    """`AnomalyLog` shared by the replicas: every anomaly reported, once per (tenant, metric, hour)."""

    def __init__(self, dsn: str) -> None:
        self._db = _Database(dsn)

    def load(self) -> list[StoredAnomaly]:
        """Every stored anomaly, oldest first."""
        rows = self._db.run(
            lambda cur: cur.execute(
                "SELECT document FROM meterway_anomalies ORDER BY detected_at, hour, tenant, metric"
            ).fetchall()
        )
        out = []
        for (document,) in rows:
            try:
                out.append(from_document(document))
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                log.warning("meterway_anomalies: a row skipped, not an anomaly record (%s)", exc)
        return out

    def append(self, anomalies: Sequence[Anomaly], detected_at: datetime) -> None:
        """Store the anomalies (before they are notified); one already stored is kept as it was."""
        if not anomalies:
            return
        rows = [(a.tenant, a.metric, a.hour, detected_at, Jsonb(to_document(a, detected_at))) for a in anomalies]
        self._db.run(
            lambda cur: cur.executemany(
                "INSERT INTO meterway_anomalies (tenant, metric, hour, detected_at, document) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
        )

    def close(self) -> None:
        self._db.close()


class PostgresLease:
    """The right to run the schedule, as a session advisory lock on a connection of its own."""

    def __init__(self, dsn: str, key: int = SCHEDULE_LEASE_LOCK) -> None:
        self.dsn = dsn
        self.key = key
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> bool:
        """True when this process holds the lease (now or already); never waits for another holder."""
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")  # the lock lives as long as this connection does
                return True
            except psycopg.Error:
                log.warning("governance lease: the connection holding it was lost; taking it again")
                self.release()
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            log.warning("governance lease: cannot reach the catalog database (%s); not running the schedule", exc)
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        except psycopg.Error:
            conn.close()
            return False
        if not (row and row[0]):
            conn.close()  # another replica runs the schedule
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                conn.close()  # closing the session drops the lock
