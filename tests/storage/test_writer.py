"""The journal writer: fsync policies, visible degradation when the backlog is full, replay at start."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from storage import writer as writer_module
from storage.duckdb_sink import DuckDBSink
from storage.writer import EventWriter
from tests.storage.helpers import count, event, write_segment


class FlakySink:
    """A sink that fails while `down` is set, like a database that cannot keep up or is unavailable."""

    def __init__(self) -> None:
        self.down = True
        self.loaded: list[Path] = []

    def load_segment(self, segment: Path) -> int:
        if self.down:
            raise OSError("database unavailable")
        self.loaded.append(segment)
        return len(segment.read_bytes().splitlines())

    def load_segments(self, segments: list[Path]) -> int:
        return sum(self.load_segment(segment) for segment in segments)

    def maintain(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_a_full_backlog_degrades_visibly_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FlakySink()
    writer = EventWriter(sink, tmp_path / "journal", flush_interval=60, max_pending=5)
    await writer.start()
    with caplog.at_level(logging.WARNING, logger="meterway.storage"):
        for _ in range(8):
            writer.submit(event())
        await writer.flush()  # fails: the sink is down
        assert writer.degraded and writer.stats.backlog_full == 3 and writer.stats.pending == 8
        assert writer.stats.load_errors == 1 and writer.stats.dropped == 0
        assert any("backlog full" in r.getMessage() for r in caplog.records)
        sink.down = False
        await writer.flush()
    assert not writer.degraded and writer.stats.pending == 0 and writer.stats.loaded == 8
    assert any("backlog cleared" in r.getMessage() for r in caplog.records)
    await writer.stop()


async def test_a_failed_journal_write_is_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = EventWriter(FlakySink(), tmp_path / "journal", flush_interval=60)
    await writer.start()
    os.close(writer._fd)  # the journal's disk is gone
    with caplog.at_level(logging.ERROR, logger="meterway.storage"):
        writer.submit(event(request_id="lost-one"))
    assert writer.stats.dropped == 1 and writer.stats.submitted == 0
    assert any("lost-one dropped" in r.getMessage() for r in caplog.records)
    writer._fd = os.open(os.devnull, os.O_WRONLY)
    await writer.stop()


async def test_a_short_journal_write_loses_only_its_own_event(tmp_path: Path) -> None:
    """A full disk takes part of a line: that event is dropped and counted, readiness says so, and the next
    event starts on a line of its own instead of being glued to the torn one. A pipe stands in for the disk:
    a non-blocking write larger than what it has room for writes what fits."""
    writer = EventWriter(FlakySink(), tmp_path / "journal", flush_interval=60)
    await writer.start()
    journal_fd = writer._fd
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 8192)
    os.set_blocking(write_end, False)
    writer._fd = write_end
    long = "x" * 5000  # each line is over half the pipe
    writer.submit(event(request_id="first", error_message=long))
    writer.submit(event(request_id="torn", error_message=long))
    assert writer.stats.dropped == 1 and writer.stats.submitted == 1 and writer.journal_failing
    taken = os.read(read_end, 65536)
    writer.submit(event(request_id="after", error_message=long))
    assert not writer.journal_failing and writer.stats.submitted == 2
    lines = (taken + os.read(read_end, 65536)).split(b"\n")
    whole = [json.loads(line)["request_id"] for line in lines if line.startswith(b"{") and line.endswith(b"}")]
    assert whole == ["first", "after"] and len(lines) == 4 and lines[-1] == b""
    for fd in (read_end, write_end):
        os.close(fd)
    writer._fd = journal_fd
    await writer.stop()


class Calls(list[int]):
    synced = threading.Event()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    calls.synced = threading.Event()
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)
        calls.synced.set()

    monkeypatch.setattr(os, "fsync", counting)
    return calls


async def test_fsync_always_syncs_every_event(tmp_path: Path, fsyncs: Calls) -> None:
    sink = FlakySink()
    sink.down = False
    writer = EventWriter(sink, tmp_path / "journal", flush_interval=60, fsync="always")
    await writer.start()
    for _ in range(3):
        writer.submit(event())
    assert len(fsyncs) == 3
    await writer.stop()


async def test_fsync_interval_syncs_the_open_segment_on_its_own_clock(tmp_path: Path, fsyncs: Calls) -> None:
    sink = FlakySink()
    sink.down = False
    writer = EventWriter(sink, tmp_path / "journal", flush_interval=60, fsync="interval", fsync_interval=0.01)
    await writer.start()
    writer.submit(event())
    assert await asyncio.to_thread(fsyncs.synced.wait, 10)
    await writer.stop()


async def test_fsync_never_leaves_it_to_the_os(tmp_path: Path, fsyncs: Calls) -> None:
    sink = FlakySink()
    sink.down = False
    writer = EventWriter(sink, tmp_path / "journal", flush_interval=60, fsync="never")
    await writer.start()
    writer.submit(event())
    await writer.stop()
    assert fsyncs == [] and len(sink.loaded) == 1


async def test_segments_left_by_a_crash_are_loaded_at_start_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    events = [event() for _ in range(4)]
    write_segment(journal / "1-1-000000.jsonl", events)
    write_segment(journal / "1-2-000001.jsonl", events[2:])  # loaded before the crash, never deleted
    sink = DuckDBSink(tmp_path / "e.duckdb")
    writer = EventWriter(sink, journal, flush_interval=60)
    await writer.start()
    assert count(sink) == 4 and sink.query("SELECT sum(requests) FROM usage_rollup_hourly") == [(4,)]
    assert not list(journal.glob("1-*.jsonl"))
    await writer.stop()


class RecordingSink(FlakySink):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.batches: list[list[str]] = []

    def load_segments(self, segments: list[Path]) -> int:
        self.batches.append([s.name for s in segments])
        return super().load_segments(segments)


async def test_a_backlog_loads_in_batches_bounded_by_bytes_and_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downtime leaves many segments; they load oldest first, a bounded amount per transaction, all of them."""
    monkeypatch.setattr(writer_module, "LOAD_BATCH", 3)
    monkeypatch.setattr(writer_module, "LOAD_BATCH_BYTES", 2500)
    journal = tmp_path / "journal"
    journal.mkdir()
    sizes = [1, 1, 1, 1, 5, 1, 12, 2]  # events per segment; one event is a few hundred bytes
    names = []
    for i, n in enumerate(sizes):
        names.append(write_segment(journal / f"1-{i:03d}-000000.jsonl", [event() for _ in range(n)]).name)
    lengths = {p.name: p.stat().st_size for p in journal.iterdir()}
    sink = RecordingSink()
    writer = EventWriter(sink, journal, flush_interval=60)
    await writer.start()
    await writer.stop()
    assert [name for batch in sink.batches for name in batch] == names, "every segment once, oldest first"
    for batch in sink.batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or sum(lengths[n] for n in batch) <= 2500, "only a segment alone may be bigger"
    assert len(sink.batches) >= 4
    assert not list(journal.glob("*.jsonl"))
