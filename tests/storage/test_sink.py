"""Loading journal segments: idempotent by request id, rollups updated with exactly the new events."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest

from storage import duckdb_sink
from storage.duckdb_sink import DuckDBSink
from storage.event import CLIP_TAGS, CLIP_TEXT, UsageEvent
from tests.storage.helpers import T0, count, event, rollup_mismatches, write_segment
from tests.support.gateway import REPO


@pytest.fixture
def sink(tmp_path: Path) -> DuckDBSink:
    s = DuckDBSink(tmp_path / "events.duckdb")
    yield s  # type: ignore[misc]
    s.close()


def test_a_replayed_segment_adds_nothing(sink: DuckDBSink, tmp_path: Path) -> None:
    segment = write_segment(tmp_path / "a.jsonl", [event() for _ in range(50)])
    assert sink.load_segment(segment) == 50
    before = sink.query("SELECT * FROM usage_rollup_hourly ORDER BY ALL")
    assert sink.load_segment(segment) == 0
    assert count(sink) == 50
    assert sink.query("SELECT * FROM usage_rollup_hourly ORDER BY ALL") == before
    assert rollup_mismatches(sink) == dict.fromkeys(rollup_mismatches(sink), 0)


def test_overlapping_segments_count_each_event_once(sink: DuckDBSink, tmp_path: Path) -> None:
    events = [event(tenant_id=f"t{i % 3}") for i in range(30)]
    assert sink.load_segment(write_segment(tmp_path / "a.jsonl", events[:20])) == 20
    assert sink.load_segment(write_segment(tmp_path / "b.jsonl", events[10:] + events[:5])) == 10
    assert count(sink) == 30
    assert sink.query("SELECT sum(requests) FROM usage_rollup_monthly")[0][0] == 30
    assert set(rollup_mismatches(sink).values()) == {0}


def test_a_duplicate_inside_one_segment_is_stored_once(sink: DuckDBSink, tmp_path: Path) -> None:
    e = event()
    assert sink.load_segment(write_segment(tmp_path / "a.jsonl", [e, e, event()])) == 2
    assert set(rollup_mismatches(sink).values()) == {0}


def test_a_stored_id_arriving_with_another_time_is_ignored_not_double_counted(sink: DuckDBSink, tmp_path: Path) -> None:
    first = event(ts=T0)
    sink.load_segment(write_segment(tmp_path / "a.jsonl", [first]))
    again = event(request_id=first.request_id, ts=T0 + timedelta(days=40), input_tokens=999)
    assert sink.load_segment(write_segment(tmp_path / "b.jsonl", [again, event(ts=T0 + timedelta(days=40))])) == 1
    assert count(sink) == 2
    assert sink.query("SELECT input_tokens FROM llm_usage_events WHERE request_id = ?", [first.request_id]) == [(100,)]
    assert set(rollup_mismatches(sink).values()) == {0}


def test_unattributed_and_unpriced_events_roll_up_under_empty_keys(sink: DuckDBSink, tmp_path: Path) -> None:
    e = event(tenant_id=None, feature=None, currency=None, total_cost=None, cost_reporting=None,
              pricing_status="unpriced")  # fmt: skip
    sink.load_segment(write_segment(tmp_path / "a.jsonl", [e]))
    row = sink.query("SELECT tenant_id, feature, currency, requests, unpriced, total_cost FROM usage_rollup_daily")
    assert row == [("", "", "", 1, 1, 0)]


def test_errors_are_counted(sink: DuckDBSink, tmp_path: Path) -> None:
    events = [event(status_code=502, error_type="upstream_error"), event(status_code=200, error_type="stream_error"),
              event(status_code=429), event()]  # fmt: skip
    sink.load_segment(write_segment(tmp_path / "a.jsonl", events))
    assert sink.query("SELECT sum(errors), sum(requests) FROM usage_rollup_monthly") == [(3, 4)]


TZ_CHECK = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from storage.duckdb_sink import DuckDBSink
from tests.storage.helpers import event, write_segment
tmp = Path(sys.argv[1])
sink = DuckDBSink(tmp / "tz.duckdb")
sink.load_segment(write_segment(tmp / "a.jsonl", [event(ts=datetime(2025, 3, 31, 20, 30, tzinfo=UTC))]))
print(sink.query("SELECT bucket FROM usage_rollup_hourly")[0][0].isoformat())
print(sink.query("SELECT bucket FROM usage_rollup_monthly")[0][0].isoformat())
"""


def test_rollup_buckets_are_utc_whatever_the_local_zone(tmp_path: Path) -> None:
    env = {**os.environ, "TZ": "Asia/Shanghai"}
    out = subprocess.run([sys.executable, "-c", TZ_CHECK, str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()  # fmt: skip
    assert out == ["2025-03-31T20:00:00+00:00", "2025-03-01T00:00:00+00:00"]


def test_retention_drops_old_raw_events_and_keeps_rollups(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "r.duckdb", retention_days=30)
    try:
        now = datetime(2025, 6, 1, tzinfo=UTC)
        old = [event(ts=now - timedelta(days=45)) for _ in range(5)]
        new = [event(ts=now - timedelta(days=2)) for _ in range(3)]
        sink.load_segment(write_segment(tmp_path / "a.jsonl", old + new))
        before = sink.query("SELECT * FROM usage_rollup_daily ORDER BY ALL")
        assert sink.apply_retention(now) == 5
        assert count(sink) == 3
        assert sink.query("SELECT * FROM usage_rollup_daily ORDER BY ALL") == before
        assert sink.query("SELECT sum(requests) FROM usage_rollup_monthly")[0][0] == 8
        assert sink.load_segment(write_segment(tmp_path / "b.jsonl", old)) == 0  # a late replay of dropped events
        assert sink.query("SELECT sum(requests) FROM usage_rollup_monthly")[0][0] == 8
    finally:
        sink.close()
    reopened = DuckDBSink(tmp_path / "r.duckdb", retention_days=30)
    try:
        assert reopened.watermark == datetime(2025, 5, 2, tzinfo=UTC)
        assert reopened.load_segment(write_segment(tmp_path / "c.jsonl", old[:1])) == 0
    finally:
        sink.close()


def test_readers_see_committed_rows(sink: DuckDBSink, tmp_path: Path) -> None:
    sink.load_segment(write_segment(tmp_path / "a.jsonl", [event() for _ in range(3)]))
    with sink.reader() as cur:
        assert cur.execute("SELECT count(*) FROM llm_usage_events").fetchone() == (3,)


def test_every_field_reads_back_as_written(sink: DuckDBSink, tmp_path: Path) -> None:
    tricky = 'comma, "quote", back\\slash, tab\t, newline\n, \x01 control, 中文 and emoji 🚀'
    e = event(
        ts=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC), duration_ms=12.5, ttft_ms=None, user_id=tricky,
        session_id="s-1", api_key_id="k-1", tags={"team": tricky, "env": ""}, stream=True, status_code=502,
        error_type="upstream_error", error_message=tricky, cached_input_tokens=40, cache_write_tokens=10,
        reasoning_tokens=5, input_cost=Decimal("1.8E-7"), cached_input_cost=Decimal("0"),
        cache_write_cost=Decimal("0.000000000001"), output_cost=Decimal("123456789.123456789012"),
        total_cost=Decimal("123456789.123456969012"), cost_reporting=Decimal("0.5"),
    )  # fmt: skip
    sink.load_segment(write_segment(tmp_path / "a.jsonl", [e]))
    with sink.reader() as cur:
        cur.execute("SELECT * FROM llm_usage_events")
        names = [d[0] for d in cur.description or []]
        row = dict(zip(names, cur.fetchone() or (), strict=True))
    assert UsageEvent.from_dict(row) == e


def test_a_torn_line_is_skipped_and_the_rest_is_stored(sink: DuckDBSink, tmp_path: Path) -> None:
    events = [event() for _ in range(3)]
    segment = write_segment(tmp_path / "a.jsonl", events)
    with segment.open("ab") as out:  # what a crash in the middle of a write leaves
        out.write(event().to_json()[:100])
    assert sink.load_segment(segment) == 3
    assert {r[0] for r in sink.query("SELECT request_id FROM llm_usage_events")} == {e.request_id for e in events}


def test_lines_that_are_not_event_objects_are_skipped_and_a_mistyped_field_reads_as_null(
    sink: DuckDBSink, tmp_path: Path
) -> None:
    good, odd = event(), event(input_tokens=7)
    mistyped = orjson.loads(odd.to_json()) | {"input_tokens": "seven"}
    segment = tmp_path / "a.jsonl"
    segment.write_bytes(
        b"\n".join([b"[1, 2]", b'"text"', b"null", b"", b"{not json", good.to_json(), orjson.dumps(mistyped)]) + b"\n"
    )
    assert sink.load_segment(segment) == 2
    rows = dict(sink.query("SELECT request_id, input_tokens FROM llm_usage_events"))
    assert rows == {good.request_id: good.input_tokens, odd.request_id: None}


def test_an_event_too_long_for_a_journal_line_is_stored_clipped(sink: DuckDBSink, tmp_path: Path) -> None:
    huge = event(error_message="x" * 3_000_000, tags={f"t{i}": "v" * 5000 for i in range(500)})
    assert len(huge.to_json()) < 1 << 20
    assert sink.load_segment(write_segment(tmp_path / "a.jsonl", [huge])) == 1
    message, tags = sink.query("SELECT error_message, tags FROM llm_usage_events")[0]
    assert message == "x" * CLIP_TEXT
    assert len(orjson.loads(tags)) == CLIP_TAGS


def test_loads_and_checkpoints_fit_in_the_smallest_memory_limit(tmp_path: Path) -> None:
    small = DuckDBSink(tmp_path / "small.duckdb", threads=1, memory_limit="64MB")
    try:
        for n in range(3):
            segment = write_segment(tmp_path / f"{n}.jsonl", [event() for _ in range(3000)])
            assert small.load_segments([segment]) == 3000
        backlog = [write_segment(tmp_path / f"b{n}.jsonl", [event() for _ in range(5000)]) for n in range(4)]
        # over 2.5 LOAD_BATCH_BYTES in one transaction, as a segment bigger than a batch loads
        assert sum(p.stat().st_size for p in backlog) > 10 * 2**20
        assert small.load_segments(backlog) == 20_000
        small._con.execute("CHECKPOINT")
        assert count(small) == 29_000
    finally:
        small.close()


def test_loading_no_segments_stores_nothing(sink: DuckDBSink) -> None:
    assert sink.load_segments([]) == 0
    assert count(sink) == 0 and sink.writable()


def test_the_work_memory_limit_holds_while_any_job_runs(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "e.duckdb", threads=1, memory_limit="64MB", work_memory_limit="256MB")

    def limit() -> str:
        value: str = sink.query("SELECT current_setting('memory_limit')")[0][0]
        return value

    try:
        assert limit() == "61.0 MiB"
        with sink.working_memory():
            assert limit() == "244.1 MiB"  # 256MB
            with sink.working_memory():  # a second job, say an export during a re-price
                assert limit() == "244.1 MiB"
            assert limit() == "244.1 MiB"  # the first still runs
        assert limit() == "61.0 MiB"
        with pytest.raises(RuntimeError), sink.working_memory():
            raise RuntimeError("the job failed")
        assert limit() == "61.0 MiB"
    finally:
        sink.close()


def test_a_limit_that_cannot_be_lowered_yet_is_lowered_by_maintenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = DuckDBSink(tmp_path / "e.duckdb", threads=1, memory_limit="64MB", work_memory_limit="256MB")
    real = duckdb_sink._set_memory_limit

    def busy(con: duckdb.DuckDBPyConnection, limit: str) -> None:
        if limit == "64MB":
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to change memory limit")
        real(con, limit)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(duckdb_sink, "_set_memory_limit", busy)
            with sink.working_memory():
                pass
            sink.maintain()  # still refused
        assert sink.query("SELECT current_setting('memory_limit')") == [("244.1 MiB",)]
        assert "DuckDB's memory limit not set to 64MB yet: Out of Memory Error" in caplog.text
        sink.maintain()
        assert sink.query("SELECT current_setting('memory_limit')") == [("61.0 MiB",)]
    finally:
        sink.close()


IN_MEMORY = "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"


def test_a_store_gone_quiet_is_checkpointed(sink: DuckDBSink, tmp_path: Path) -> None:
    wal = Path(f"{sink.path}.wal")
    sink.load_segment(write_segment(tmp_path / "a.jsonl", [event() for _ in range(500)]))
    assert wal.stat().st_size > 0 and sink.query(IN_MEMORY)[0][0] > 0
    sink.maintain()  # written just now: not quiet for IDLE_CHECKPOINT seconds yet
    assert wal.stat().st_size > 0
    sink.idle_checkpoint = 0.0
    sink.maintain()
    assert not wal.exists() or wal.stat().st_size == 0
    assert sink.query(IN_MEMORY) == [(0,)]  # the rows are in the file, not held in memory
    assert count(sink) == 500 and set(rollup_mismatches(sink).values()) == {0}
    sink.load_segment(write_segment(tmp_path / "b.jsonl", [event()]))  # the next write makes it due again
    assert wal.stat().st_size > 0
    sink.maintain()
    assert not wal.exists() or wal.stat().st_size == 0


CACHED = "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"


@pytest.mark.parametrize("release", [True, False])
def test_a_store_that_checkpoints_after_each_load_gives_its_memory_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: bool
) -> None:
    """What a gateway's store does by default: the rows are checkpointed after every load, and DuckDB's
    cache of the blocks the loads read and the checkpoints wrote is given back (without that step, the
    control, the cache holds several MiB after a few loads and grows with the file)."""
    sink = DuckDBSink(tmp_path / "e.duckdb", threads=1, memory_limit="128MB", idle_checkpoint=0.0)
    if not release:
        monkeypatch.setattr(sink, "release_cache", lambda: None)
    try:
        for k in range(20):
            sink.load_segment(
                write_segment(tmp_path / f"{k}.jsonl", [event(tenant_id=f"t{i % 40}") for i in range(2000)])
            )
            sink.maintain()
            assert sink.query(IN_MEMORY) == [(0,)]  # every load's rows are in the file at once
        cached = sink.query(CACHED)[0][0]
        assert (cached <= 1 << 20) == release, cached
        assert sink.query("SELECT current_setting('memory_limit')") == [("122.0 MiB",)]  # the limit is back
        assert count(sink) == 40_000 and set(rollup_mismatches(sink).values()) == {0}
    finally:
        sink.close()


def test_the_cache_is_not_released_while_a_read_or_an_export_runs(tmp_path: Path) -> None:
    """Lowering the memory limit for a moment could fail a report reading at that moment."""
    sink = DuckDBSink(tmp_path / "e.duckdb", memory_limit="128MB", work_memory_limit="256MB")
    real, limits = sink._con, []

    class Recording:
        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("SET memory_limit"):
                limits.append(sql.split("'")[1])
            return real.execute(sql, *args)

    sink._con = Recording()  # type: ignore[assignment]
    try:
        with sink.reader() as cur:
            sink.release_cache()
            assert cur.execute("SELECT count(*) FROM llm_usage_events").fetchone() == (0,)
        with sink.working_memory():
            sink.release_cache()
        assert limits == []
        sink.release_cache()
        assert limits == [duckdb_sink.CACHE_FLOOR, "128MB"]
    finally:
        sink._con = real
        sink.close()


def test_a_checkpoint_duckdb_declines_is_tried_again_after_the_next_quiet_spell(
    sink: DuckDBSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import duckdb

    real = sink._con

    class Declining:
        def execute(self, sql: str, *args: object) -> object:
            if "CHECKPOINT" in sql:
                raise duckdb.TransactionException("Cannot CHECKPOINT: a transaction is open")
            return real.execute(sql, *args)

    sink.load_segment(write_segment(tmp_path / "a.jsonl", [event() for _ in range(20)]))
    sink.idle_checkpoint = 0.0
    monkeypatch.setattr(sink, "_con", Declining())
    with caplog.at_level("INFO", logger="meterway.storage"):
        sink.maintain()
    assert "checkpoint put off: Cannot CHECKPOINT" in caplog.text
    monkeypatch.setattr(sink, "_con", real)
    wal = Path(f"{sink.path}.wal")
    assert wal.stat().st_size > 0
    sink.maintain()
    assert not wal.exists() or wal.stat().st_size == 0
    assert count(sink) == 20


def test_a_checkpoint_that_a_full_disk_breaks_does_not_stop_loading_for_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB invalidates a database whose checkpoint could not write, and refuses every later statement
    until it is opened again. The sink reopens it (the write-ahead log keeps what was committed), so loads
    go on once there is room, and nothing stored before is lost. The disk fills by a file-size limit."""
    sink = DuckDBSink(tmp_path / "e.duckdb")
    sink.load_events([event() for _ in range(100)])
    sink.checkpoint()
    segments = [
        write_segment(tmp_path / f"s{i}.jsonl", [event(error_message=os.urandom(1000).hex()) for _ in range(150)])
        for i in range(8)
    ]
    late = [write_segment(tmp_path / f"late{i}.jsonl", [event()]) for i in range(2)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((tmp_path / "e.duckdb").stat().st_size + 600 * 1024, hard))
    try:
        for segment in segments:  # the log takes them; the file cannot grow by the checkpoint's blocks
            assert sink.load_segments([segment]) == 150
        sink.checkpoint()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert any("failed fatally" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert [sink.load_segments([segment]) for segment in late] == [1, 1]
    assert sink.writable() and count(sink) == 100 + 8 * 150 + 2
    sink.checkpoint()
    sink.close()
    reopened = DuckDBSink(tmp_path / "e.duckdb")
    assert count(reopened) == 1302
    reopened.close()
