"""The store process on its own: it loads closed and orphaned segments, answers reads, and stops on its pipe.

Also: journal segments are handed over by rename and claimed by lock, and one loader per spool.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import tempfile
from pathlib import Path

import duckdb
import httpx
import pytest

from gateway.config import load_config
from storage.errors import RelayedStoreError, duckdb_error, out_of_memory, store_failure
from storage.journal import SegmentFile, SpoolBusy, SpoolLock, claim_orphans, closed_segments
from storage.remote import RemoteSink
from storage.store_process import run_store
from tests.storage.helpers import event, write_segment
from tests.storage.serving import Load, ServeGroup, demo_config, wait_until


def test_segments_are_handed_over_by_rename_and_orphans_are_claimed_by_lock(tmp_path: Path) -> None:
    live = SegmentFile(tmp_path)
    os.write(live.fd, event().to_json() + b"\n")
    dead = tmp_path / "999-1-000000.open"  # a writer that died: nobody holds its lock
    write_segment(dead, [event()])
    assert claim_orphans(tmp_path) == [dead.with_suffix(".jsonl")]
    assert live.path.exists(), "a segment whose writer is alive stays open"
    closed = live.close()
    assert closed is not None and closed.suffix == ".jsonl"
    assert closed_segments(tmp_path) == sorted([closed, dead.with_suffix(".jsonl")])

    held = os.open(tmp_path / "998-1-000000.open", os.O_WRONLY | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert claim_orphans(tmp_path) == []
    finally:
        os.close(held)

    lock = SpoolLock(tmp_path)
    with pytest.raises(SpoolBusy, match="another Meterway process"):
        SpoolLock(tmp_path)
    lock.release()
    assert SpoolLock.try_take(tmp_path) is not None


def test_store_process_loads_the_spool_serves_reads_and_stops_when_its_pipe_closes(tmp_path: Path) -> None:
    cfg, _ = demo_config(tmp_path, {"path": str(tmp_path / "events.duckdb"), "flush_interval_ms": 20})
    config = load_config(cfg)
    spool = config.storage.spool
    spool.mkdir(parents=True)
    write_segment(spool / "1-1-000000.jsonl", [event(tenant_id="a") for _ in range(3)])
    write_segment(spool / "2-1-000000.open", [event(tenant_id="b") for _ in range(2)])  # its writer died
    socket = Path(tempfile.mkdtemp(prefix="mw-test-")) / "store.sock"
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    store = ctx.Process(target=run_store, args=(config, str(socket), theirs))
    store.start()
    theirs.close()
    sink = RemoteSink(socket, config.storage.memory_limit)
    try:
        assert mine.poll(60) and mine.recv()[0] == "ready"
        assert sink.writable()
        assert sink.query("SELECT tenant_id, count(*) FROM llm_usage_events GROUP BY ALL ORDER BY 1") == [
            ("a", 3), ("b", 2),
        ]  # fmt: skip
        with sink.reader() as cur:
            cur.execute("SELECT sum(requests) FROM usage_rollup_daily WHERE tenant_id = ?", ["a"])
            assert cur.fetchone() == (3,)
        with pytest.raises(RelayedStoreError, match="read-only") as refused:
            sink.query("DELETE FROM llm_usage_events")
        assert duckdb_error(refused.value) and not out_of_memory(refused.value)
        with pytest.raises(RelayedStoreError, match="Catalog Error") as missing:
            sink.query("SELECT * FROM no_such_table")
        assert missing.value.kind == "CatalogException"
        # a read too big for the store's memory limit: answered as the single process answers its own
        with pytest.raises(RelayedStoreError, match="Out of Memory") as full:
            sink.query("SELECT len(list(i)) FROM range(50000000) t(i)")
        assert duckdb_error(full.value) and out_of_memory(full.value)
        assert store_failure(full.value, ("storage.memory_limit", sink.memory_limit)).endswith(
            "ask for a shorter time range (since / until) or raise storage.memory_limit (now 128MB)"
        )
        assert sink.query("SELECT count(*) FROM llm_usage_events") == [(5,)], "the store answers after it"

        write_segment(spool / "3-1-000000.jsonl", [event(tenant_id="c")])  # a worker's rotated segment
        wait_until(lambda: sink.query("SELECT count(*) FROM llm_usage_events") == [(6,)])
        write_segment(spool / "4-1-000000.open", [event(tenant_id="d")])  # a worker killed at the very end
        mine.close()  # the supervisor's cue: load everything left, then exit
        store.join(60)
        assert store.exitcode == 0
    finally:
        sink.close()
        if store.is_alive():
            store.kill()
            store.join()
    with duckdb.connect(str(config.storage.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM llm_usage_events").fetchone() == (7,)
    assert not list(spool.glob("*.jsonl")) and not list(spool.glob("*.open"))


def test_one_worker_with_the_store_in_its_own_process(tmp_path: Path) -> None:
    cfg, port = demo_config(
        tmp_path, {"path": str(tmp_path / "e.duckdb"), "flush_interval_ms": 50, "loader": "process"}
    )
    gateway = ServeGroup(cfg, port, 1, tmp_path / "serve.log")
    try:
        gateway.start()
        with Load([gateway.url], 2) as load:
            load.wait_for(20)

        def stored() -> set[str]:
            r = httpx.get(f"{gateway.url}/admin/events", params={"limit": 500}, timeout=10)
            return {e["request_id"] for e in r.json()["data"]}

        wait_until(lambda: stored() == set(load.answered))
        status = httpx.get(f"{gateway.url}/admin/storage", timeout=10).json()  # the store process's own
        assert status["writer"]["stored"] == status["events"]["stored"] == len(load.answered), status
        # the worker's own readers (dashboard, insights) go through the store too, without DuckDB of their own
        page = httpx.get(f"{gateway.url}/dashboard", timeout=30)
        assert page.status_code == 200 and "t0" in page.text, page.text[:500]
        csv = httpx.get(f"{gateway.url}/dashboard/export/requests.csv", timeout=30)
        assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == len(load.answered) + 1
        forecast = httpx.get(f"{gateway.url}/admin/forecast", timeout=30)
        assert forecast.status_code == 200, forecast.text
        worker = httpx.get(f"{gateway.url}/admin/events", params={"limit": 1}, timeout=10).headers["x-meterway-worker"]
        assert "_duckdb" not in Path(f"/proc/{worker}/maps").read_text()
        assert gateway.terminate() == 0, gateway.log.read_text()
    finally:
        gateway.stop()


def test_several_workers_need_the_store_process(tmp_path: Path) -> None:
    cfg, port = demo_config(tmp_path, {"path": str(tmp_path / "e.duckdb"), "loader": "inline"})
    gateway = ServeGroup(cfg, port, 2, tmp_path / "serve.log")
    with pytest.raises(RuntimeError, match="exited with 2"):
        gateway.start()
    assert "storage.loader: inline" in gateway.log.read_text()
