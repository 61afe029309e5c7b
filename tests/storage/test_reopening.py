"""A store opens its file again now and then, so that its memory grows neither with its file nor with
its uptime (see DuckDBSink._renew), and never while a read runs or in a way that loses a load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from storage import duckdb_sink
from storage.duckdb_sink import DuckDBSink
from tests.storage.helpers import count, event, rollup_mismatches
from tests.support.gateway import REPO

# Fresh interpreters read the bytes in use on malloc's heap.
IN_USE = """
import ctypes, json, sys
from datetime import timedelta
from pathlib import Path
import orjson
from storage.duckdb_sink import DuckDBSink
from tests.storage.helpers import T0, event, rollup_mismatches

class MallInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo

def in_use():
    return libc.mallinfo2().uordblks  # DuckDB's row group metadata lives on malloc's heap

def load(sink, folder, first, size):  # `size` events a second apart from T0 + `first` s, loaded; in_use() after
    template, segment = orjson.loads(event().to_json()), folder / "s.jsonl"
    with segment.open("wb") as out:
        for n in range(first, first + size):
            template["request_id"], template["ts"] = f"g-{n:010d}", (T0 + timedelta(seconds=n)).isoformat()
            out.write(orjson.dumps(template) + b"\\n")
    sink.load_segments([segment])
    sink.maintain()
    return in_use()
"""

HEAP_GROWTH = (
    IN_USE
    + """
folder, setting, value, loads, size = Path(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:])
# Small loads checkpoint only when one is due to open the file again (quicker; the heap grows either way),
# unless `size` is negative: then every load is checkpointed, as a gateway's store does by default.
each = size > 100 or size < 0
size = abs(size)
sink = DuckDBSink(folder / "e.duckdb", threads=1, memory_limit="128MB", idle_checkpoint=0.0 if each else None)
sink.renew_rows = sink.renew_loads = 10**12
setattr(sink, setting, value)
readings = [load(sink, folder, k * size, size) for k in range(loads)]
stored = sink.query("SELECT count(*) FROM llm_usage_events")[0][0]
print(json.dumps({"grown": readings[-1] - readings[loads // 7], "stored": stored,
                  "rollups": sorted(set(rollup_mismatches(sink).values()))}))
"""
)


def heap_growth(tmp_path: Path, setting: str, values: tuple[int, int], loads: int, size: int) -> dict[int, int]:
    """Load `loads` segments of `size` events (negative: each load checkpointed) into a store with each of two
    values of `setting`, each in a fresh interpreter; returns the bytes malloc's heap gained, by value."""
    grown = {}
    for value in values:
        folder = tmp_path / str(value)
        folder.mkdir()
        args = [str(folder), setting, str(value), str(loads), str(size)]
        out = subprocess.run([sys.executable, "-c", HEAP_GROWTH, *args], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=110)  # fmt: skip
        result = orjson.loads(out.stdout)
        assert result["stored"] == loads * abs(size) and result["rollups"] == [0]
        grown[value] = result["grown"]
    return grown


def test_a_store_opens_its_file_again_so_its_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """DuckDB keeps the metadata of every row group written since the file was opened, on malloc's heap
    (outside its memory limit): 300,000 events (two and a half row groups) hold about 1 MiB more in the
    control. Opening the file again after a checkpoint gives that back."""
    grown = heap_growth(tmp_path, "renew_rows", (100_000, 10**12), 12, 25_000)
    assert grown[10**12] > 600 * 1024, grown  # the control: the heap grows with the row groups written
    assert grown[100_000] < grown[10**12] / 3, grown


def test_a_quiet_store_opens_its_file_again_after_many_small_loads(tmp_path: Path) -> None:
    """Each load leaves DuckDB a few KiB on malloc's heap however few events it carries, until the file is
    opened again: a gateway seeing a request a second would take days to reach `renew_rows` events and
    hold hundreds of MiB by then. `renew_loads` opens it again after as many loads."""
    grown = heap_growth(tmp_path, "renew_loads", (50, 10**12), 200, 5)
    assert grown[10**12] > 600 * 1024, grown  # the control: the heap grows with every load
    assert grown[50] < grown[10**12] / 3, grown


def test_a_store_of_small_loads_keeps_few_row_groups_in_memory(tmp_path: Path) -> None:
    """Each load checkpointed appends a row group, whose metadata (about 80 KiB) DuckDB keeps until the file
    is opened again; only the checkpoint before that vacuums them into one (see test below). So the store
    opens its file again after `RENEW_LOADS` loads: 120 loads of 5 events, each checkpointed as a gateway's
    store does by default, hold a tenth of what they would without."""
    grown = heap_growth(tmp_path, "renew_loads", (duckdb_sink.RENEW_LOADS, 10**12), 120, -5)
    assert grown[10**12] > 4 << 20, grown  # the control: the heap holds every row group appended
    assert grown[duckdb_sink.RENEW_LOADS] < grown[10**12] / 10, grown


def test_a_store_is_not_opened_again_while_a_read_runs(tmp_path: Path) -> None:
    """Closing the file would end a report reading it: the checkpoint after the read opens it again."""
    sink = DuckDBSink(tmp_path / "e.duckdb", idle_checkpoint=0.0)
    sink.renew_rows = 100
    try:
        first = sink._con
        with sink.reader() as cur:
            sink.load_events([event() for _ in range(150)])
            sink.maintain()
            assert sink._con is first
            assert cur.execute("SELECT count(*) FROM llm_usage_events").fetchone() == (150,)
        sink.load_events([event()])
        sink.maintain()
        assert sink._con is not first
        assert count(sink) == 151 and set(rollup_mismatches(sink).values()) == {0}
    finally:
        sink.close()


def test_a_store_that_checkpoints_only_when_quiet_still_opens_its_file_again_under_load(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "e.duckdb", idle_checkpoint=3600.0)
    sink.renew_rows = 100
    try:
        first = sink._con
        sink.load_events([event() for _ in range(60)])
        sink.maintain()
        assert sink._con is first  # not quiet yet, and not due
        sink.load_events([event() for _ in range(60)])
        sink.maintain()
        assert sink._con is not first
        assert count(sink) == 120 and set(rollup_mismatches(sink).values()) == {0}
    finally:
        sink.close()


def test_a_store_that_cannot_open_its_file_again_loads_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process may take DuckDB's lock in the moment the file is closed: the next load opens it."""
    sink = DuckDBSink(tmp_path / "e.duckdb", idle_checkpoint=0.0)
    sink.renew_rows = 100
    connect = sink._connect

    def locked() -> duckdb.DuckDBPyConnection:
        raise duckdb_sink.StorageLocked(f"{sink.path} is in use by another process (PID 4242)")

    try:
        monkeypatch.setattr(sink, "_connect", locked)
        sink.load_events([event() for _ in range(150)])
        sink.maintain()
        assert "could not be opened again (the next load tries again)" in caplog.text
        assert "PID 4242" in caplog.text
        monkeypatch.setattr(sink, "_connect", connect)
        assert sink.load_events([event() for _ in range(5)]) == 5
        assert count(sink) == 155 and set(rollup_mismatches(sink).values()) == {0}
    finally:
        sink.close()


# A file of `rows` events written in one go (full row groups, as a long-running store's file is), then
# loads of 1,000 events into it, each checkpointed as a gateway's store does, without opening it again.
VACUUM_GROWTH = (
    IN_USE
    + """
import duckdb
folder, rows, vacuum_each = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
DuckDBSink(folder / "e.duckdb").close()
with duckdb.connect(str(folder / "e.duckdb")) as con:
    con.execute("SET enable_progress_bar = false")
    con.execute("INSERT INTO llm_usage_events (request_id, ts, provider, model, tenant_id, input_tokens, "
                "output_tokens, total_cost) SELECT 'r-' || i, TIMESTAMPTZ '2026-01-01' + i * INTERVAL 1 SECOND, "
                "'acme', 'm' || (i % 7), 't' || (i % 13), i % 997, i % 89, i / 1e6 FROM range(?) t(i)", [rows])
sink = DuckDBSink(folder / "e.duckdb", threads=1, memory_limit="128MB", idle_checkpoint=0.0)
sink.renew_rows = sink.renew_loads = 10**12
if vacuum_each:  # every checkpoint vacuums, as DuckDB does by default
    sink._renew_due, sink._renew = (lambda: True), (lambda: False)
after = 400 * 86400  # seconds from T0 past the file's events
readings = [load(sink, folder, after + k * 1000, 1000) for k in range(6)]
stored = sink.query("SELECT count(*) FROM llm_usage_events")[0][0]
print(json.dumps({"grown": readings[-1] - readings[0], "stored": stored}))
"""
)


def test_only_the_checkpoint_before_a_reopening_reads_the_metadata_of_the_whole_file(tmp_path: Path) -> None:
    """DuckDB's vacuum (merging the small row groups loads append) reads the metadata of every row group in
    the file, about 0.55 MiB a million events, and keeps it until the file is closed: a store that vacuumed
    at every checkpoint held more the bigger its file grew. Only the checkpoint before a reopening does."""
    grown = {}
    for vacuum_each in ("1", "0"):
        folder = tmp_path / vacuum_each
        folder.mkdir()
        out = subprocess.run([sys.executable, "-c", VACUUM_GROWTH, str(folder), "2000000", vacuum_each], cwd=REPO,
                             capture_output=True, text=True, check=True, timeout=110)  # fmt: skip
        result = orjson.loads(out.stdout)
        assert result["stored"] == 2_006_000
        grown[vacuum_each] = result["grown"]
    # both hold the metadata of the six row groups the loads appended; the control that of the file's 16 too
    assert grown["1"] > grown["0"] + 600 * 1024, grown
