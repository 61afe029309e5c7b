"""Schema versions: an older file is upgraded in place, a newer one is refused with a clear message."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from gateway.cli import main
from storage import schema
from storage.duckdb_sink import DuckDBSink, read_events
from storage.errors import StorageError
from storage.event import COLUMNS
from storage.schema import CURRENT_VERSION, MIGRATIONS, Migration
from tests.storage.helpers import event, rollup_mismatches, write_segment

# The file layout Meterway's first release wrote (schema version 1), verbatim.
V1_DDL = """
CREATE TABLE IF NOT EXISTS llm_usage_events (
  request_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, duration_ms DOUBLE, ttft_ms DOUBLE, tenant_id VARCHAR,
  user_id VARCHAR, feature VARCHAR, session_id VARCHAR, api_key_id VARCHAR, tags JSON, provider VARCHAR,
  endpoint VARCHAR, model_requested VARCHAR, model VARCHAR, stream BOOLEAN, status_code INTEGER, error_type VARCHAR,
  error_message VARCHAR, input_tokens BIGINT, cached_input_tokens BIGINT, cache_write_tokens BIGINT,
  output_tokens BIGINT, reasoning_tokens BIGINT, total_tokens BIGINT, usage_source VARCHAR, currency VARCHAR,
  input_cost DECIMAL(38,12), cached_input_cost DECIMAL(38,12), cache_write_cost DECIMAL(38,12),
  output_cost DECIMAL(38,12), total_cost DECIMAL(38,12), cost_reporting DECIMAL(38,12), reporting_currency VARCHAR,
  price_id VARCHAR, pricing_status VARCHAR
);
CREATE TABLE IF NOT EXISTS meterway_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT OR IGNORE INTO meterway_meta VALUES ('schema_version', '1');
"""


def make_v1_file(path: Path, tmp: Path, n: int = 40) -> None:
    segment = write_segment(tmp / "v1.jsonl", [event(tenant_id=f"t{i % 4}") for i in range(n)])
    with duckdb.connect(str(path)) as con:
        con.execute(V1_DDL)
        names = ", ".join(n for (n,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'llm_usage_events' "
            "ORDER BY ordinal_position").fetchall())  # fmt: skip
        con.execute(f"INSERT INTO llm_usage_events SELECT {names} FROM {read_events(repr(str(segment)))}")


def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    make_v1_file(path, tmp_path)
    sink = DuckDBSink(path)
    try:
        assert sink.upgraded_from == 1
        assert sink.query("SELECT value FROM meterway_meta WHERE key = 'schema_version'") == [(str(CURRENT_VERSION),)]
        assert sink.query("SELECT count(*) FROM llm_usage_events") == [(40,)]
        assert sink.query("SELECT sum(requests) FROM usage_rollup_daily") == [(40,)]  # backfilled
        assert set(rollup_mismatches(sink).values()) == {0}
        assert sink.load_segment(write_segment(tmp_path / "new.jsonl", [event(thinking=True)])) == 1
        # events stored before version 4 do not know their thinking mode
        assert sink.query("SELECT thinking, count(*) FROM llm_usage_events GROUP BY ALL ORDER BY ALL") == [
            (True, 1), (None, 40)]  # fmt: skip
        # request_id keeps no DuckDB index (it would live in memory and grow with every event)
        assert sink.query("SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'llm_usage_events'") == [(0,)]
        assert sink.query(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'llm_usage_events' "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
        ) == [(0,)]
    finally:
        sink.close()


def test_an_upgrade_may_take_more_memory_than_the_configured_limit_and_loads_keep_to_it(tmp_path: Path) -> None:
    """The rollup backfill of 200,000 distinct hourly keys does not fit in 64 MB; loads afterwards must."""
    path = tmp_path / "big-v1.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(V1_DDL)
        con.execute(
            "INSERT INTO llm_usage_events (request_id, ts, tenant_id, provider, model, status_code, input_tokens, "
            "output_tokens, total_tokens, currency, total_cost, pricing_status) "
            "SELECT 'r' || i, TIMESTAMPTZ '2025-01-01 00:00:00+00' + INTERVAL (i % 8760) HOUR, 't' || (i % 53), "
            "'openai', 'gpt-4o-mini', 200, 10, 2, 12, 'USD', 0.001, 'priced' FROM range(200000) t(i)"
        )
    sink = DuckDBSink(path, threads=1, memory_limit="64MB")
    try:
        assert sink.upgraded_from == 1
        assert sink.query("SELECT count(*), sum(requests), sum(total_cost) FROM usage_rollup_hourly") == [
            (200_000, 200_000, Decimal("200.000000000000"))
        ]
        assert sink.query("SELECT current_setting('memory_limit')") == [("61.0 MiB",)]  # 64 MB, as DuckDB shows it
        assert sink.load_segment(write_segment(tmp_path / "new.jsonl", [event() for _ in range(100)])) == 100
    finally:
        sink.close()


def test_a_failed_upgrade_step_is_rolled_back_named_and_finished_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.duckdb"
    make_v1_file(path, tmp_path)

    def fails(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE half_done (x INTEGER)")
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    monkeypatch.setattr(schema, "MIGRATIONS", (*MIGRATIONS[:2], Migration(3, "fails", fails)))
    with pytest.raises(StorageError, match=r"upgrading .*old.duckdb to storage schema version \d+ failed \(the failing "
                       r"step was rolled back\): Out of Memory Error"):  # fmt: skip
        DuckDBSink(path)
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT value FROM meterway_meta WHERE key = 'schema_version'").fetchall() == [("2",)]
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'half_done'").fetchall() == [(0,)]
    monkeypatch.undo()
    sink = DuckDBSink(path)
    try:
        assert sink.upgraded_from == 2
        assert sink.query("SELECT count(*) FROM llm_usage_events") == [(40,)]
        assert set(rollup_mismatches(sink).values()) == {0}
    finally:
        sink.close()


def test_every_version_is_one_step_and_the_event_table_matches_the_event_schema(tmp_path: Path) -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, CURRENT_VERSION + 1))
    columns = (
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position"
    )
    sink = DuckDBSink(tmp_path / "fresh.duckdb")
    try:
        assert sink.upgraded_from == 0
        stored = sink.query(columns, ["llm_usage_events"])
    finally:
        sink.close()
    with duckdb.connect() as con:
        con.execute("CREATE TABLE reference (" + ", ".join(f"{name} {kind}" for name, kind in COLUMNS) + ")")
        expected = con.execute(columns, ["reference"]).fetchall()
    assert stored == expected, "a new event column needs a migration step"


@pytest.fixture
def newer_file(tmp_path: Path) -> Path:
    path = tmp_path / "newer.duckdb"
    DuckDBSink(path).close()
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meterway_meta SET value = '99' WHERE key = 'schema_version'")
    return path


def test_a_newer_file_is_refused_with_a_clear_message(newer_file: Path) -> None:
    with pytest.raises(StorageError, match=r"schema version 99, but this Meterway understands versions up to \d+"):
        DuckDBSink(newer_file)
    with duckdb.connect(str(newer_file)) as con:  # left untouched
        assert con.execute("SELECT value FROM meterway_meta WHERE key = 'schema_version'").fetchall() == [("99",)]


def test_serve_and_report_say_so_in_one_line(
    newer_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {{path: {newer_file}}}\n")
    assert main(["serve", "--config", str(cfg), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("storage error: ") and "upgrade Meterway" in err[-1]
    assert main(["report", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[-1]] and "schema version 99" in err[-1]
