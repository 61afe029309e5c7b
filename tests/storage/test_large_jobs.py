"""Exports and re-prices of more events than the gateway's `storage.memory_limit` holds.

A gateway keeps DuckDB small (`memory_limit`); an export's sort and Parquet row groups need more,
so a job runs under `storage.work_memory_limit` and the limit goes back when it ends. A re-price
rewrites in transactions of at most REWRITE_BATCH events, each consistent on its own. A job that
still does not fit answers in the admin API's error format, naming the limit to raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest

import storage.reprice as reprice_module
from gateway.cli import main
from gateway.costing import EventPricer
from storage.duckdb_sink import DuckDBSink
from storage.timerange import TimeRange
from tests.storage.helpers import BOOK, count, fill, rollup_mismatches, write_book
from tests.support.gateway import REPO, write_config
from tests.support.process import GatewayProcess, free_port

EVENTS = 100_000  # a sorted Parquet export of these needs more than 64MB
KEY = "large-jobs-admin-key"
SMALL = "61.0 MiB"  # 64MB, as DuckDB shows it


def start(tmp: Path, storage: dict[str, object]) -> tuple[str, Path, GatewayProcess]:
    path = tmp / "events.duckdb"
    sink = DuckDBSink(path)
    fill(sink, EVENTS)
    sink.close()
    port = free_port()
    cfg = write_config(tmp, {
        "server": {"port": port}, "auth": {"admin_key_env": "MW_TEST_ADMIN_KEY"},
        "storage": {"path": str(path), "memory_limit": "64MB", **storage},
        "pricing": {"book": str(write_book(tmp / "book"))},
    })  # fmt: skip
    proc = GatewayProcess(["serve", "--config", str(cfg)], cwd=REPO, env={"MW_TEST_ADMIN_KEY": KEY}, log=tmp / "gw.log")
    url = f"http://127.0.0.1:{port}"
    proc.start(f"{url}/healthz")
    return url, cfg, proc


@pytest.fixture(autouse=True)
def admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TEST_ADMIN_KEY", KEY)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    url, cfg, proc = start(tmp_path_factory.mktemp("roomy"), {})
    yield url, cfg
    proc.kill()


def memory_limit(url: str) -> str:
    response = httpx.get(f"{url}/admin/storage", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    value: str = response.json()["memory_limit"]
    return value


def test_a_parquet_export_bigger_than_the_memory_limit_runs_under_the_work_limit(
    gateway: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, cfg = gateway
    assert memory_limit(url) == SMALL
    out = cfg.parent / "all.parquet"
    assert main(["export", "--config", str(cfg), "--format", "parquet", "--out", str(out)]) == 0
    assert f"exported {EVENTS} events" in capsys.readouterr().err
    rows = duckdb.sql(f"SELECT request_id FROM '{out}'").fetchall()
    assert len(rows) == EVENTS
    assert rows[0][0] == "bulk-00000000" and rows[-1][0] == f"bulk-{EVENTS - 1:08d}"  # oldest first
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert memory_limit(url) == SMALL  # back to the steady limit once the export ended


def test_a_re_price_of_more_events_than_the_memory_limit_holds(
    gateway: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, cfg = gateway
    write_book(cfg.parent / "book", BOOK.replace("output: 2}", "output: 4}"))
    assert main(["reprice", "--config", str(cfg), "--since", "2025-03-01"]) == 0
    assert f"{EVENTS} events examined, changed {EVENTS}" in capsys.readouterr().out
    assert main(["report", "--config", str(cfg), "--by", "model", "--since", "2025-03-01", "--format", "csv"]) == 0
    header, row = (line.split(",") for line in capsys.readouterr().out.splitlines()[:2])
    assert row[0] == "m1" and row[header.index("cost_reporting")] == "18"  # 100,000 at 0.00018, from the rollups
    assert memory_limit(url) == SMALL


def test_a_job_that_does_not_fit_names_the_limit_to_raise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, cfg, proc = start(tmp_path, {"work_memory_limit": "64MB"})
    try:
        response = httpx.get(f"{url}/admin/export", params={"format": "parquet"},
                             headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "store_out_of_memory" and error["type"] == "api_error"
        assert error["message"].startswith("the store ran out of memory (Out of Memory Error: ")
        assert error["message"].endswith(
            "ask for a shorter time range (since / until) or raise storage.work_memory_limit (now 64MB)"
        )
        out = tmp_path / "all.parquet"
        assert main(["export", "--config", str(cfg), "--format", "parquet", "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith(f"error: {url}: the store ran out of memory (Out of Memory Error: ")
        assert memory_limit(url) == SMALL
        assert main(["export", "--config", str(cfg), "--format", "csv", "--out", str(out)]) == 0  # CSV fits
    finally:
        proc.kill()
    assert not list(tmp_path.glob("meterway-export-*"))


def test_a_re_price_rewrites_in_batches_each_consistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reprice_module, "REWRITE_BATCH", 1000)
    sink = DuckDBSink(tmp_path / "events.duckdb", threads=1, memory_limit="64MB", work_memory_limit="256MB")
    fill(sink, 2500)
    cfg = write_config(tmp_path, {"pricing": {"book": str(write_book(tmp_path / "book", BOOK.replace(
        "output: 2}", "output: 4}")))}})  # fmt: skip
    from gateway.config import load_config

    pricer = EventPricer.from_config(load_config(cfg, env={}))
    everything = TimeRange(None, datetime(2026, 1, 1, tzinfo=UTC))
    transactions = []
    real = sink.transaction
    monkeypatch.setattr(sink, "transaction", lambda work: transactions.append(1) or real(work))
    result = reprice_module.reprice(sink, pricer, everything, book_version="v2")
    assert (result.examined, result.changed, len(transactions)) == (2500, 2500, 3)
    assert count(sink, "SELECT count(*) FROM event_price_audit") == 2500
    assert count(sink, "SELECT count(*) FROM llm_usage_events WHERE total_cost = 0.00018") == 2500
    assert rollup_mismatches(sink) == dict.fromkeys(rollup_mismatches(sink), 0)
    sink.close()


def test_a_re_price_that_fails_midway_keeps_the_batches_before_and_a_second_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reprice_module, "REWRITE_BATCH", 1000)
    sink = DuckDBSink(tmp_path / "events.duckdb", threads=1)
    fill(sink, 2500)
    cfg = write_config(tmp_path, {"pricing": {"book": str(write_book(tmp_path / "book", BOOK.replace(
        "output: 2}", "output: 4}")))}})  # fmt: skip
    from gateway.config import load_config

    pricer = EventPricer.from_config(load_config(cfg, env={}))
    everything = TimeRange(None, datetime(2026, 1, 1, tzinfo=UTC))
    real = sink.transaction
    calls = []

    def second_fails(work: Callable[[duckdb.DuckDBPyConnection], object]) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise duckdb.IOException("disk full")
        return real(work)

    monkeypatch.setattr(sink, "transaction", second_fails)
    with pytest.raises(duckdb.IOException):
        reprice_module.reprice(sink, pricer, everything, book_version="v2")
    assert count(sink, "SELECT count(*) FROM llm_usage_events WHERE total_cost = 0.00018") == 1000
    assert rollup_mismatches(sink) == dict.fromkeys(rollup_mismatches(sink), 0)
    again = reprice_module.reprice(sink, pricer, everything, book_version="v2")
    assert (again.examined, again.changed) == (2500, 1500)
    assert count(sink, "SELECT count(*) FROM llm_usage_events WHERE total_cost = 0.00018") == 2500
    assert not list(tmp_path.glob("meterway-reprice-*"))
    sink.close()
