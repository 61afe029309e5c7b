"""DuckDB sink: the `llm_usage_events` table and bulk loading of journal segments into it.

Segments are newline-delimited JSON written by the writer; DuckDB parses them itself
(`read_json`), so loading a batch costs the event loop nothing and holds the GIL only briefly.
`INSERT OR IGNORE` on the `request_id` primary key makes every load idempotent: a segment
replayed after a crash never counts an event twice.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb

from storage.event import COLUMNS

TABLE = "llm_usage_events"
SCHEMA_VERSION = 1


def create_table_sql() -> str:
    cols = ",\n  ".join(f"{name} {kind}" for name, kind in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {cols}\n)"


def _json_columns() -> str:
    parts = []
    for name, kind in COLUMNS:
        kind = kind.replace(" PRIMARY KEY", "")
        parts.append(f"'{name}': '{kind}'")
    return "{" + ", ".join(parts) + "}"


class DuckDBSink:
    """Owns the DuckDB file. Thread-safe: loads and queries are serialized by a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = duckdb.connect(str(path))
        self._lock = threading.Lock()
        self._con.execute(create_table_sql())
        self._con.execute("CREATE TABLE IF NOT EXISTS meterway_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self._con.execute("INSERT OR IGNORE INTO meterway_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        names = ", ".join(name for name, _ in COLUMNS)
        self._load_sql = (
            f"INSERT OR IGNORE INTO {TABLE} ({names}) SELECT {names} FROM read_json(?, "
            f"format='newline_delimited', ignore_errors=true, columns={_json_columns()}) "
            "WHERE request_id IS NOT NULL"
        )

    def load_segment(self, segment: Path) -> int:
        """Insert a journal segment's events; returns how many were new."""
        with self._lock:
            row = self._con.execute(self._load_sql, [str(segment)]).fetchone()
        return int(row[0]) if row else 0

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    def writable(self) -> bool:
        try:
            self.query("SELECT 1")
        except duckdb.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._con.close()
