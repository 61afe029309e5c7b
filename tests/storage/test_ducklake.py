"""DuckLake against a real Postgres catalog: two gateways write one lake at once, and each sees all of it.

Gateway A is one process loading its own journal; gateway B is `serve --workers 2` with a store
process. Both compact every two seconds while loading, so folds and file merges race with loads (and
lose or win conflicts) the whole time. Afterwards every answered request is in the lake exactly
once, and the rollups equal the aggregates recomputed from the raw events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.cli import main
from gateway.costing import EventPricer
from pricing.pricer import Pricer
from storage.ducklake_sink import DuckLakeSink, LakeSettings
from storage.errors import StorageError
from storage.event import COLUMN_NAMES
from storage.reprice import reprice
from storage.schema import CURRENT_VERSION
from storage.timerange import TimeRange
from tests.storage.helpers import T0, event, rollup_mismatches, rows_per_key, write_book, write_segment
from tests.storage.postgres import Postgres, postgres_server
from tests.storage.serving import Load, ServeGroup, demo_config, wait_until
from tests.support.gateway import LiveGateway


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def lake_storage(catalog: str, root: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "ducklake", "catalog": catalog, "data_path": f"{root / 'lake'}/",
        "journal_dir": str(root / name / "journal"), "flush_interval_ms": 50, "compaction_interval_s": 2, **extra,
    }  # fmt: skip


def test_two_gateways_write_one_lake_concurrently(tmp_path: Path, pg: Postgres) -> None:
    catalog = pg.create_database("two_gateways")
    cfg_a, port_a = demo_config(tmp_path / "a", lake_storage(catalog, tmp_path, "a"))
    cfg_b, port_b = demo_config(tmp_path / "b", lake_storage(catalog, tmp_path, "b"))
    a = ServeGroup(cfg_a, port_a, 1, tmp_path / "a.log")
    b = ServeGroup(cfg_b, port_b, 2, tmp_path / "b.log")
    try:
        a.launch()
        b.launch()
        a.wait_ready()
        b.wait_ready()
        with Load([a.url, b.url], 8) as load:
            load.wait_for(400)
        answered = set(load.answered)

        def total(url: str) -> int:
            r = httpx.get(f"{url}/admin/summary", timeout=10)
            assert r.status_code == 200, r.text
            count: int = r.json()["total_requests"]
            return count

        seen: dict[str, int] = {}

        def converged() -> bool:  # each gateway sees both gateways' events
            seen.update(a=total(a.url), b=total(b.url), answered=len(answered))
            return seen["a"] == seen["b"] == len(answered)

        wait_until(converged, state=lambda: seen)
        assert a.terminate() == 0, a.log.read_text()
        assert b.terminate() == 0, b.log.read_text()
    finally:
        a.stop()
        b.stop()

    settings = LakeSettings(catalog, f"{tmp_path / 'lake'}/", tmp_path / "check", compaction_interval=1)
    sink = DuckLakeSink(settings)
    try:
        ids = [row[0] for row in sink.query("SELECT request_id FROM llm_usage_events")]
        assert len(ids) == len(set(ids)) and set(ids) == answered
        assert set(rollup_mismatches(sink, deltas=True).values()) == {0}
        sink.compact()  # folded: one row per key, equal to the recomputation row for row
        assert set(rollup_mismatches(sink).values()) == {0}
    finally:
        sink.close()


def test_lake_sink_is_idempotent_reprices_and_keeps_rollups_right(tmp_path: Path, pg: Postgres) -> None:
    settings = LakeSettings(pg.create_database("sink"), f"{tmp_path / 'lake'}/", tmp_path / "work", 3600)
    with pytest.raises(StorageError, match="cannot attach the DuckLake"):
        DuckLakeSink(LakeSettings(pg.catalog("nope"), f"{tmp_path / 'lake'}/", tmp_path / "work"))
    sink = DuckLakeSink(settings)
    try:
        segment = write_segment(tmp_path / "s.jsonl", [event(model="m2", currency="CNY") for _ in range(20)])
        assert sink.load_segment(segment) == 20
        assert sink.load_segment(segment) == 0  # a replay counts nothing twice
        assert sink.query("SELECT count(*) FROM usage_rollup_hourly WHERE requests < 0") == [(0,)]

        pricer = EventPricer(Pricer(write_book(tmp_path / "book"), reporting_currency="USD"))
        result = reprice(sink, pricer, TimeRange(T0, T0.replace(year=2026)), book_version="v2")
        assert result.changed == 20
        assert set(rollup_mismatches(sink, deltas=True).values()) == {0}
        assert sink.query("SELECT count(*) FROM event_price_audit") == [(20,)]
        sink.compact()
        assert set(rollup_mismatches(sink).values()) == {0}
        row = sink.query(f"SELECT {', '.join(COLUMN_NAMES)} FROM llm_usage_events LIMIT 1")[0]
        assert dict(zip(COLUMN_NAMES, row, strict=True))["price_id"] is not None
        assert sink.writable() and "password" not in sink.location
    finally:
        sink.close()


def test_a_lake_made_by_an_older_meterway_gains_the_new_event_columns(tmp_path: Path, pg: Postgres) -> None:
    settings = LakeSettings(pg.create_database("v3"), f"{tmp_path / 'lake'}/", tmp_path / "work", 3600)
    sink = DuckLakeSink(settings)
    try:
        assert sink.upgraded_from == 0
        assert sink.load_segment(write_segment(tmp_path / "old.jsonl", [event() for _ in range(5)])) == 5

        def as_version_3(con: Any) -> None:  # the lake as schema version 3 left it: no `thinking`, `service_tier`
            con.execute("ALTER TABLE llm_usage_events DROP COLUMN thinking")
            con.execute("ALTER TABLE llm_usage_events DROP COLUMN service_tier")
            con.execute("DELETE FROM meterway_meta WHERE key = 'schema_version'")
            con.execute("INSERT INTO meterway_meta VALUES ('schema_version', '3')")

        sink.transaction(as_version_3)
    finally:
        sink.close()
    sink = DuckLakeSink(settings)
    try:
        assert sink.upgraded_from == 3
        assert sink.query("SELECT max(value::INTEGER) FROM meterway_meta") == [(CURRENT_VERSION,)]
        new = event(thinking=True, service_tier="flex")
        assert sink.load_segment(write_segment(tmp_path / "new.jsonl", [new])) == 1
        grouped = "SELECT thinking, service_tier, count(*) FROM llm_usage_events GROUP BY ALL ORDER BY ALL"
        assert sink.query(grouped) == [(True, "flex", 1), (None, None, 5)]
    finally:
        sink.close()
    sink = DuckLakeSink(settings)  # opened again: nothing left to upgrade
    try:
        assert sink.upgraded_from == CURRENT_VERSION
    finally:
        sink.close()


def test_one_replica_at_a_time_maintains_or_reprices_the_lake(
    tmp_path: Path, pg: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = pg.create_database("lease")
    a, b = (DuckLakeSink(LakeSettings(catalog, f"{tmp_path / 'lake'}/", tmp_path / n, 0)) for n in "ab")
    monkeypatch.setattr("storage.reprice.REWRITE_WAIT", 0.5)
    pricer = EventPricer(Pricer(write_book(tmp_path / "book"), reporting_currency="USD"))
    try:
        for sink in (a, b):  # one delta row per key from each replica
            events = [event(model="m2", currency="CNY", ts=T0) for _ in range(5)]
            assert sink.load_segment(write_segment(tmp_path / f"{sink.holder}.jsonl", events)) == 5
        with a.exclusive() as held:
            assert held
            with b.exclusive() as also, a.exclusive() as again:
                assert not also and not again  # nor does another holder in A's process (a re-price beside maintenance)
            b.maintain()  # compaction is due, but A maintains the lake: B folds nothing
            assert rows_per_key(b) == 2
            with pytest.raises(StorageError, match="another gateway has been maintaining the store"):
                reprice(b, pricer, TimeRange(T0, T0.replace(year=2026)))
            assert b.query("SELECT count(*) FROM event_price_audit") == [(0,)]
        b.maintain()  # A let go: B folds
        assert rows_per_key(b) == 1
        assert set(rollup_mismatches(b).values()) == {0}
        assert reprice(b, pricer, TimeRange(T0, T0.replace(year=2026))).changed == 10

        assert a._take_lease()  # A takes the lease and dies holding it: B waits until it runs out
        with b.exclusive() as held:
            assert not held
        a.transaction(lambda con: con.execute("UPDATE meterway_lease SET expires = now() - INTERVAL 1 SECOND"))
        with b.exclusive() as held:
            assert held
    finally:
        a.close()
        b.close()


_lakes = itertools.count()


@pytest.fixture
def other_replica(tmp_path: Path, pg: Postgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[DuckLakeSink]:
    """Another replica's sink on a fresh lake holding 3 events (`tmp_path / 'lake'`, catalog in `.settings`);
    a re-price waits half a second for the lease it may hold."""
    monkeypatch.setattr("storage.reprice.REWRITE_WAIT", 0.5)
    catalog = pg.create_database(f"lease_{next(_lakes)}")
    other = DuckLakeSink(LakeSettings(catalog, f"{tmp_path / 'lake'}/", tmp_path / "other"))
    try:
        other.load_events([event(model="m2", currency="CNY", ts=T0) for _ in range(3)])
        yield other
    finally:
        other.close()


def lake_config(tmp_path: Path, other: DuckLakeSink) -> dict[str, Any]:
    """A gateway's config on `other`'s lake, with the storage tests' price book."""
    storage = {"backend": "ducklake", "catalog": other.settings.catalog, "data_path": other.settings.data_path,
               "journal_dir": str(tmp_path / "journal")}  # fmt: skip
    return {"storage": storage, "pricing": {"book": str(write_book(tmp_path / "book")), "reporting_currency": "USD"}}


def test_reprice_command_says_so_while_another_replica_holds_the_lake(
    tmp_path: Path, other_replica: DuckLakeSink, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(lake_config(tmp_path, other_replica)))
    args = ["reprice", "--config", str(cfg), "--since", "2025-03-01", "--until", "2025-04-01"]
    with other_replica.exclusive() as held:
        assert held
        assert main(args) == 2
        assert "error: another gateway has been maintaining the store" in capsys.readouterr().err
    assert main(args) == 0
    assert "3 events examined, changed 3" in capsys.readouterr().out


def test_admin_reprice_answers_409_while_another_replica_holds_the_lake(
    tmp_path: Path, other_replica: DuckLakeSink
) -> None:
    gateway = LiveGateway.from_doc(tmp_path, lake_config(tmp_path, other_replica)).start()
    try:
        body = {"since": "2025-03-01", "until": "2025-04-01"}
        with other_replica.exclusive() as held:
            assert held
            busy = httpx.post(gateway.url + "/admin/reprice", json=body, timeout=30)
        assert busy.status_code == 409
        error = busy.json()["error"]
        assert error["code"] == "store_busy" and "another gateway has been maintaining the store" in error["message"]
        assert gateway.app.gateway.sink.query("SELECT count(*) FROM event_price_audit") == [(0,)]
        done = httpx.post(gateway.url + "/admin/reprice", json=body, timeout=30)
        assert done.status_code == 200 and done.json()["changed"] == 3
    finally:
        gateway.stop()
