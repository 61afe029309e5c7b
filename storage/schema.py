"""The DuckDB file's schema and its migrations: an ordered list of steps, one per schema version.

`meterway_meta` holds `schema_version`. Opening a file runs, in order and each in its own
transaction, every step after the file's version, so a newer Meterway upgrades an older file in
place (and a crash mid-upgrade leaves the file at the last completed version). A file whose
version is newer than the last step here is refused with a clear message instead of being read
with the wrong assumptions.

Each step's DDL is frozen: a step never changes once released. A new column or table is a new
step appended to `MIGRATIONS` (an `ALTER TABLE ... ADD COLUMN` for a new event column), so a
fresh file and an upgraded one end up identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storage import rollups

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("meterway.storage")

EVENTS = "llm_usage_events"
META = "meterway_meta"
AUDIT = "event_price_audit"

# The event table as schema version 1 shipped it.
_V1_EVENT_COLUMNS = """
  request_id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ, duration_ms DOUBLE, ttft_ms DOUBLE,
  tenant_id VARCHAR, user_id VARCHAR, feature VARCHAR, session_id VARCHAR, api_key_id VARCHAR, tags JSON,
  provider VARCHAR, endpoint VARCHAR, model_requested VARCHAR, model VARCHAR, stream BOOLEAN,
  status_code INTEGER, error_type VARCHAR, error_message VARCHAR,
  input_tokens BIGINT, cached_input_tokens BIGINT, cache_write_tokens BIGINT, output_tokens BIGINT,
  reasoning_tokens BIGINT, total_tokens BIGINT, usage_source VARCHAR, currency VARCHAR,
  input_cost DECIMAL(38,12), cached_input_cost DECIMAL(38,12), cache_write_cost DECIMAL(38,12),
  output_cost DECIMAL(38,12), total_cost DECIMAL(38,12), cost_reporting DECIMAL(38,12),
  reporting_currency VARCHAR, price_id VARCHAR, pricing_status VARCHAR
"""

AUDIT_DDL = f"""CREATE TABLE {AUDIT} (
  request_id VARCHAR NOT NULL, repriced_at TIMESTAMPTZ NOT NULL, book_version VARCHAR,
  old_price_id VARCHAR, old_pricing_status VARCHAR, old_currency VARCHAR,
  old_input_cost DECIMAL(38,12), old_cached_input_cost DECIMAL(38,12), old_cache_write_cost DECIMAL(38,12),
  old_output_cost DECIMAL(38,12), old_total_cost DECIMAL(38,12), old_cost_reporting DECIMAL(38,12),
  old_reporting_currency VARCHAR,
  new_price_id VARCHAR, new_pricing_status VARCHAR, new_currency VARCHAR,
  new_total_cost DECIMAL(38,12), new_cost_reporting DECIMAL(38,12), new_reporting_currency VARCHAR
)"""


class SchemaError(Exception):
    """The file cannot be used by this Meterway; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {EVENTS} ({_V1_EVENT_COLUMNS})")


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    for table in rollups.TABLES:
        con.execute(rollups.create_sql(table))
    rollups.apply(con, EVENTS)  # backfill from the events already stored
    con.execute(AUDIT_DDL)


def _v3(con: duckdb.DuckDBPyConnection) -> None:
    # request_id stays the events' key (the loader stores each once) but loses DuckDB's PRIMARY KEY
    # index, which lives in memory and grows with every event stored. No ALTER drops a constraint,
    # so the table is rebuilt, in time order.
    columns = _V1_EVENT_COLUMNS.replace("request_id VARCHAR PRIMARY KEY", "request_id VARCHAR NOT NULL")
    con.execute(f"CREATE TABLE {EVENTS}_v3 ({columns})")
    con.execute(f"INSERT INTO {EVENTS}_v3 SELECT * FROM {EVENTS} ORDER BY ts")
    con.execute(f"DROP TABLE {EVENTS}")
    con.execute(f"ALTER TABLE {EVENTS}_v3 RENAME TO {EVENTS}")


# Columns added to the event table after version 3, by the version that added them. A DuckLake's
# tables are upgraded with the same ALTERs (storage/ducklake_sink.py).
ADDED_EVENT_COLUMNS: dict[int, tuple[tuple[str, str], ...]] = {
    4: (("thinking", "BOOLEAN"),),
    5: (("service_tier", "VARCHAR"),),
}


def add_event_columns(con: duckdb.DuckDBPyConnection, version: int) -> None:
    for name, kind in ADDED_EVENT_COLUMNS.get(version, ()):
        con.execute(f"ALTER TABLE {EVENTS} ADD COLUMN IF NOT EXISTS {name} {kind}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "usage events", _v1),
    Migration(2, "hourly, daily and monthly rollups; price audit", _v2),
    Migration(3, "no in-memory index on request_id", _v3),
    Migration(4, "the thinking mode a request was priced in", lambda con: add_event_columns(con, 4)),
    Migration(5, "the service tier a request was priced at", lambda con: add_event_columns(con, 5)),
)
CURRENT_VERSION = MIGRATIONS[-1].version


def file_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version: 0 for a new file."""
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
    if META not in tables:
        return 1 if EVENTS in tables else 0
    row = con.execute(f"SELECT value FROM {META} WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 1 if EVENTS in tables else 0
    try:
        return int(row[0])
    except ValueError:
        raise SchemaError(f"{META}.schema_version is {row[0]!r}, not a number: the file is damaged") from None


def migrate(con: duckdb.DuckDBPyConnection, path: Path | str) -> int:
    """Bring the file to `CURRENT_VERSION`; returns the version it had. Raises SchemaError if it is newer."""
    version = file_version(con)
    if version > CURRENT_VERSION:
        raise SchemaError(
            f"{path} has storage schema version {version}, but this Meterway understands versions up to "
            f"{CURRENT_VERSION}: upgrade Meterway to read it (or point storage.path at another file)"
        )
    con.execute(f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for step in MIGRATIONS[version:]:
        con.execute("BEGIN TRANSACTION")
        try:
            step.apply(con)
            con.execute(f"DELETE FROM {META} WHERE key = 'schema_version'")
            con.execute(f"INSERT INTO {META} VALUES ('schema_version', ?)", [str(step.version)])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        if version:
            log.info("storage schema of %s upgraded to version %d: %s", path, step.version, step.summary)
    return version
