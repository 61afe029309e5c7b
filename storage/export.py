"""Raw events out of DuckDB as CSV or Parquet, written by DuckDB's own COPY (no rows pass through Python).

The sort that puts them oldest first spills to disk, but needs more room than a gateway's
`storage.memory_limit` leaves it for wide rows: an export runs under `storage.work_memory_limit`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storage.event import COLUMN_NAMES
from storage.schema import EVENTS
from storage.timerange import TimeRange, iso

if TYPE_CHECKING:
    from storage.duckdb_sink import DuckDBSink

FORMATS = {"csv": "(FORMAT csv, HEADER true)", "parquet": "(FORMAT parquet, COMPRESSION zstd)"}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def export_events(sink: DuckDBSink, rng: TimeRange, fmt: str, out: Path) -> int:
    """Write the events of `rng` (oldest first) to `out`; returns how many were written."""
    conds = [f"ts < TIMESTAMPTZ '{iso(rng.until)}'"]
    if rng.since is not None:
        conds.append(f"ts >= TIMESTAMPTZ '{iso(rng.since)}'")
    target = str(out).replace("'", "''")
    sql = (
        f"COPY (SELECT {', '.join(COLUMN_NAMES)} FROM {EVENTS} WHERE {' AND '.join(conds)} ORDER BY ts, request_id) "
        f"TO '{target}' {FORMATS[fmt]}"
    )
    with sink.working_memory(), sink.reader() as cur:
        row = cur.execute(sql).fetchone()
    return int(row[0]) if row else 0
