"""`meterway serve --workers 2`: every worker's events reach the one store, once each, and any worker answers.

A real supervisor, store process and two workers on 127.0.0.1: concurrent load, then the admin
summary from both workers, `/metrics` summed over both, SIGTERM (exit 0, everything loaded); and a
SIGKILL of the whole process group under load, a restart, and neither loss nor duplicates.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from tests.storage.helpers import rollup_mismatches
from tests.storage.serving import Load, ServeGroup, demo_config, wait_until

CLIENTS = 6


def stored_ids(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        assert set(rollup_mismatches(con).values()) == {0}
        assert con.execute("SELECT sum(requests) FROM usage_rollup_hourly").fetchone() == (
            con.execute("SELECT count(*) FROM llm_usage_events").fetchone()
        )
        return [row[0] for row in con.execute("SELECT request_id FROM llm_usage_events").fetchall()]


def summary_total(url: str) -> tuple[int, str]:
    """Total requests in the admin summary and the worker that answered, on a fresh connection."""
    r = httpx.get(f"{url}/admin/summary", timeout=10, headers={"connection": "close"})
    assert r.status_code == 200, r.text
    return r.json()["total_requests"], r.headers["x-meterway-worker"]


def metric_sum(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def test_two_workers_store_every_event_once_and_both_answer_admin_queries(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    metrics_dir = tmp_path / "metrics"
    cfg, port = demo_config(tmp_path, {"path": str(db), "flush_interval_ms": 50})
    gateway = ServeGroup(cfg, port, 2, tmp_path / "serve.log", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        gateway.start()
        with Load([gateway.url], CLIENTS) as load:
            load.wait_for(300)
        answered = set(load.answered)
        assert len(answered) == len(load.answered)

        wait_until(lambda: summary_total(gateway.url)[0] == len(answered))
        workers: set[str] = set()
        for _ in range(200):  # fresh connections until both workers have answered
            total, worker = summary_total(gateway.url)
            assert total == len(answered)
            workers.add(worker)
            if len(workers) == 2:
                break
        assert len(workers) == 2, "one worker answered every admin query"
        # each worker publishes its counts at least once a second; the scrape sums every worker's files
        wait_until(lambda: metric_sum(gateway.url, "meterway_requests_total") == len(answered))
        served = {int(m.group(1)) for f in metrics_dir.glob("counter_*.db") if (m := re.search(r"_(\d+)\.db$", f.name))}
        assert {int(w) for w in workers} <= served, "both workers' metrics are in the multiprocess directory"
        # the store's own writer (usage records, and every load under --workers) is in the sums too
        record = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 2}
        ingested = httpx.post(f"{gateway.url}/v1/usage", json=record, timeout=10)
        assert ingested.status_code == 200
        submitted = lambda: metric_sum(gateway.url, "meterway_writer_events_submitted_total")  # noqa: E731
        wait_until(lambda: submitted() == len(answered) + 1, state=lambda: (submitted(), len(answered)))
        answered.update(ingested.json()["request_ids"])
        # only the store process holds DuckDB: neither the workers, after serving and answering admin queries
        # through the store, nor the supervisor (which does not load the proxy either)
        for worker in workers:
            assert "_duckdb" not in Path(f"/proc/{worker}/maps").read_text(), f"worker {worker} loaded DuckDB"
            assert b"\0MALLOC_ARENA_MAX=1\0" in Path(f"/proc/{worker}/environ").read_bytes(), "one malloc arena"
        assert gateway.proc is not None
        supervisor = Path(f"/proc/{gateway.proc.pid}/maps").read_text()
        assert "_duckdb" not in supervisor and "aiohttp" not in supervisor, "the supervisor loads no DuckDB or proxy"

        assert gateway.terminate() == 0, gateway.log.read_text()
    finally:
        gateway.stop()
    ids = stored_ids(db)
    assert len(ids) == len(set(ids)) and set(ids) == answered
    spool = tmp_path / "events.duckdb.journal"
    assert not list(spool.glob("*.jsonl")) and not list(spool.glob("*.open"))


def test_sigkill_of_the_whole_group_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    cfg, port = demo_config(tmp_path, {"path": str(db), "flush_interval_ms": 20})
    first = ServeGroup(cfg, port, 2, tmp_path / "first.log")
    try:
        first.start()
        with Load([first.url], CLIENTS) as load:
            load.wait_for(200)
            first.kill_group()  # supervisor, store process and workers, mid-load
    finally:
        first.stop()
    answered = set(load.answered)
    assert len(answered) == len(load.answered) >= 200

    second = ServeGroup(cfg, port, 2, tmp_path / "second.log")
    try:
        second.start()
        assert second.terminate() == 0, second.log.read_text()
    finally:
        second.stop()
    ids = stored_ids(db)
    assert len(ids) == len(set(ids)), "a request was stored twice"
    assert answered <= set(ids), f"{len(answered - set(ids))} answered requests are missing"
    assert len(ids) - len(answered) <= CLIENTS  # only requests in flight at the kill may lack an answer


def stored_event(url: str, request_id: str) -> dict[str, object] | None:
    r = httpx.get(f"{url}/admin/events/{request_id}", timeout=10)
    return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]


def _book(folder: Path, *entries: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "prices.yaml").write_text("prices:\n" + "".join(
        f"  - {{provider: openai, model: gpt-4o-mini, currency: USD, {entry}, output: 1}}\n" for entry in entries
    ))  # fmt: skip
    return folder


@pytest.mark.parametrize("route", ["/admin/prices/reload", "/admin/reprice"])
def test_a_price_book_reload_through_one_worker_reaches_every_process(tmp_path: Path, route: str) -> None:
    """A reload, or the reload a re-price starts with (which the store process does), reaches every worker."""
    book = _book(tmp_path / "book", "effective_from: 2024-07-18, input: 1")
    cfg, port = demo_config(tmp_path, {"path": str(tmp_path / "e.duckdb"), "flush_interval_ms": 50})
    doc = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**doc, "pricing": {"book": str(book), "reporting_currency": "USD"}}))
    gateway = ServeGroup(cfg, port, 2, tmp_path / "serve.log")
    usage = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1_000_000, "output_tokens": 0}

    def ingested_price_id() -> str:  # priced by the store process
        answer = httpx.post(f"{gateway.url}/v1/usage", json=usage, timeout=10)
        assert answer.status_code == 200, answer.text
        request_id = answer.json()["request_ids"][0]
        return str(wait_until(lambda: stored_event(gateway.url, request_id))["price_id"])

    try:
        gateway.start()
        assert ingested_price_id() == "openai/gpt-4o-mini@2024-07-18T00:00:00Z"
        _book(tmp_path / "book", "effective_from: 2024-07-18, input: 1", "effective_from: 2025-01-01, input: 2")
        reloaded = httpx.post(f"{gateway.url}{route}", json={"since": "2025-01-01"}, timeout=10)
        assert reloaded.status_code == 200, reloaded.text
        new = "openai/gpt-4o-mini@2025-01-01T00:00:00Z"
        wait_until(lambda: ingested_price_id() == new, timeout=20)
        chat = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(20):  # fresh connections: both workers answer some of them
            r = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat, headers={"connection": "close"})
            assert r.status_code == 200
            event = wait_until(lambda r=r: stored_event(gateway.url, r.headers["x-meterway-request-id"]))
            assert event["price_id"] == new, event
        assert gateway.terminate() == 0, gateway.log.read_text()
    finally:
        gateway.stop()


def _store_pid(supervisor: int) -> int:
    """The supervisor's child that holds DuckDB: the store process (workers never load it)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return next(int(pid) for pid in children if "_duckdb" in Path(f"/proc/{pid}/maps").read_text())


def test_a_store_that_cannot_start_again_leaves_the_workers_serving_until_it_can(tmp_path: Path) -> None:
    """The store process dies and the file is held by another process when the supervisor starts it again
    (a report run from cron, say): the workers go on answering and journaling, the supervisor tries again,
    and once the file is free every event is stored."""
    db = tmp_path / "events.duckdb"
    cfg, port = demo_config(tmp_path, {"path": str(db), "flush_interval_ms": 50})
    gateway = ServeGroup(cfg, port, 2, tmp_path / "serve.log")
    try:
        gateway.start()
        assert gateway.proc is not None
        supervisor = gateway.proc.pid

        def take_the_file() -> duckdb.DuckDBPyConnection | None:
            try:
                return duckdb.connect(str(db))
            except duckdb.IOException:  # a store holds it: the first, or one started again before the file was taken
                with contextlib.suppress(StopIteration, OSError):
                    os.kill(_store_pid(supervisor), signal.SIGKILL)
                return None

        holder = wait_until(take_the_file)
        try:
            with Load([gateway.url], CLIENTS) as load:
                load.wait_for(60)
            wait_until(lambda: "trying again" in gateway.log.read_text())
            assert gateway.proc.poll() is None, gateway.log.read_text()
        finally:
            holder.close()

        def all_stored() -> bool:  # the store answers once it is up again
            r = httpx.get(f"{gateway.url}/admin/summary", timeout=10)
            return r.status_code == 200 and r.json()["total_requests"] >= len(load.answered)

        wait_until(all_stored, timeout=60)
        assert gateway.terminate() == 0, gateway.log.read_text()
    finally:
        gateway.stop()
    assert set(stored_ids(db)) >= set(load.answered)
