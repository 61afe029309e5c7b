"""DuckLake replicas share their governance through the Postgres catalog: one schedule, one set of rate limits.

Two gateways on one lake and one catalog database, each with a data dir of its own (as replicas on
two machines have): the daily report and an anomaly go out once, not once per replica; both list
the anomaly; when the replica running the schedule stops, the other takes over without sending
again what was sent, and sends what falls due next; and a rate limit admits its number of requests
across both replicas, not that many per replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from governance.pg_ledger import conninfo
from governance.pg_schedule import SCHEMA, PostgresAnomalyLog
from tests.gateway.test_governance import CHAT, governed
from tests.gateway.test_governance_jobs import spike_history
from tests.storage.helpers import event
from tests.storage.postgres import Postgres, postgres_server
from tests.support.gateway import LiveGateway
from tests.support.governance import SECRET, SECRET_ENV, Clock, gateway_doc, jobs_of, settle, wait_until
from tests.support.hook import HookReceiver
from tests.support.process import free_port
from tests.support.upstream import Upstream


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookReceiver]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with HookReceiver() as receiver:
        yield receiver


def replicas(tmp: Path, catalog: str, doc: dict[str, Any], clock: Clock | None = None) -> list[LiveGateway]:
    """Two gateways on one lake and catalog, with separate data dirs and journals; not started."""
    out = []
    for name in ("a", "b"):
        storage = {"backend": "ducklake", "catalog": catalog, "data_path": f"{tmp / 'lake'}/",
                   "path": str(tmp / name / "meterway.duckdb"), "flush_interval_ms": 50}  # fmt: skip
        (tmp / name).mkdir()
        gw = LiveGateway.from_doc(tmp / name, {**doc, "storage": storage})
        jobs = jobs_of(gw)
        jobs.interval = jobs.max_wait = 0.1  # a replica not running the schedule tries for it every pass
        if clock is not None:
            jobs.clock = clock
        out.append(gw)
    return out


def settle_all(gateways: list[LiveGateway], passes: int) -> None:
    for gw in gateways:
        settle(gw, passes)


def test_replicas_send_the_daily_report_once_and_hand_the_schedule_over(
    tmp_path: Path, pg: Postgres, hook: HookReceiver
) -> None:
    clock = Clock(datetime(2025, 6, 12, 7, 59, 30, tzinfo=UTC))
    history = [event(ts=datetime(2025, 6, 11, 9 + i, tzinfo=UTC), tenant_id="acme", total_cost=Decimal("1.5"))
               for i in range(3)]  # fmt: skip
    history += [event(ts=datetime(2025, 6, 12, 9, tzinfo=UTC), tenant_id="acme", total_cost=Decimal("0.25"))]
    doc = gateway_doc(hook.url, ("report.*",), alerts={"daily_report": {"at": "08:00"}})
    a, b = replicas(tmp_path, pg.create_database("reports"), doc, clock)
    a.app.gateway.sink.load_events(history)
    running = [a.start(), b.start()]
    try:
        settle_all(running, 2)
        assert hook.received == []  # 07:59:30: not yet
        clock.now = datetime(2025, 6, 12, 8, 0, 5, tzinfo=UTC)
        for gw in running:
            jobs_of(gw).wake()
        hook.wait_for(1)
        settle_all(running, 3)
        assert [d["title"] for d in hook.documents()] == ["Meterway daily spend, 2025-06-11"]
        assert hook.documents()[0]["payload"]["total"] == "4.5"
        (leader,) = [gw for gw in running if jobs_of(gw).lease.held]

        leader.stop()  # the other replica takes the schedule over at its next pass
        running.remove(leader)
        (survivor,) = running
        clock.now += timedelta(minutes=10)
        jobs_of(survivor).wake()
        wait_until(lambda: jobs_of(survivor).lease.held)  # once the stopped replica's session has ended
        settle(survivor, 2)
        assert len(hook.received) == 1  # it knows the 2025-06-11 report went out

        clock.now = datetime(2025, 6, 13, 8, 0, 5, tzinfo=UTC)
        jobs_of(survivor).wake()
        hook.wait_for(2)
        settle(survivor, 2)
        assert [d["title"] for d in hook.documents()][1:] == ["Meterway daily spend, 2025-06-12"]
        assert hook.documents()[1]["payload"]["total"] == "0.25"
    finally:
        for gw in running:
            gw.stop()


def test_replicas_notify_an_anomaly_once_and_both_list_it(tmp_path: Path, pg: Postgres, hook: HookReceiver) -> None:
    now = datetime.now(UTC)
    a, b = replicas(tmp_path, pg.create_database("anomalies"), gateway_doc(hook.url, ("anomaly",)))
    a.app.gateway.sink.load_events(spike_history(now))
    running = [a.start(), b.start()]
    try:
        hook.wait_for(1)
        settle_all(running, 3)  # both schedules ran again, and again
        assert len(hook.received) == 1
        assert hook.documents()[0]["payload"]["tenant"] == "acme"
        for gw in running:
            listed = httpx.get(f"{gw.url}/admin/anomalies").json()
            assert [(x["tenant"], x["metric"]) for x in listed["anomalies"]] == [("acme", "spend")]
        assert sum(jobs_of(gw).lease.held for gw in running) == 1
        assert not any((tmp_path / name / "anomalies.jsonl").exists() for name in "ab")
    finally:
        for gw in running:
            gw.stop()


def test_replicas_take_from_one_rate_limit(tmp_path: Path, pg: Postgres, upstream: Upstream) -> None:
    doc = governed(upstream, tmp_path, {"rate_limits": [{"name": "acme-rpm", "tenant": "acme", "rpm": 4}]})
    a, b = replicas(tmp_path, pg.create_database("rates"), doc)
    running = [a.start(), b.start()]
    try:
        answers = [
            httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "acme"}, timeout=30)
            for _ in range(4)
            for gw in running
        ]
        other = httpx.post(f"{b.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "globex"}, timeout=30)
    finally:
        for gw in running:
            gw.stop()
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 4 and codes.count(429) == 4, codes  # 4 a minute between both, one every 15 s
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited" and "acme-rpm" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert other.status_code == 200


def test_an_anomaly_the_database_refused_to_store_is_notified_once_it_is_stored(
    tmp_path: Path, pg: Postgres, hook: HookReceiver
) -> None:
    catalog = pg.create_database("refusing")
    dsn = conninfo(catalog)
    with psycopg.connect(dsn, autocommit=True) as con:  # the table exists, and refuses every row for now
        con.execute(SCHEMA)
        con.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON meterway_anomalies FOR EACH ROW EXECUTE FUNCTION refuse()")
    a, _ = replicas(tmp_path, catalog, gateway_doc(hook.url, ("anomaly",)))
    a.app.gateway.sink.load_events(spike_history(datetime.now(UTC)))
    a.start()
    try:
        settle(a, 4)  # each pass found the spike and could not store it: nothing is notified unstored
        assert hook.received == []
        assert httpx.get(f"{a.url}/admin/anomalies").json()["total"] == 0
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute("DROP TRIGGER refuse ON meterway_anomalies")
        hook.wait_for(1)
        settle(a, 3)
        assert len(hook.received) == 1 and hook.documents()[0]["payload"]["tenant"] == "acme"
        assert httpx.get(f"{a.url}/admin/anomalies").json()["total"] == 1
    finally:
        a.stop()


def test_admin_anomalies_says_when_the_database_cannot_be_read(tmp_path: Path, pg: Postgres) -> None:
    a, _ = replicas(tmp_path, pg.create_database("unreadable"), gateway_doc())
    a.start()
    try:
        a.app.gateway.governance.anomalies = PostgresAnomalyLog(f"host=127.0.0.1 port={free_port()} dbname=gone")
        answer = httpx.get(f"{a.url}/admin/anomalies", timeout=60)
    finally:
        a.stop()
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "anomalies_unavailable" and "catalog database does not answer" in error["message"]
