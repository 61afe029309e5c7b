"""Building events, segments, small price books and stores for the storage tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from storage import rollups
from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent

T0 = datetime(2025, 3, 1, tzinfo=UTC)
_ids = itertools.count()

BOOK = """
fx:
  - {from: CNY, to: USD, rate: "0.14", effective_from: 2024-01-01}
prices:
  - {provider: acme, model: m1, currency: USD, effective_from: 2024-01-01, input: 1, output: 2}
  - {provider: acme, model: m2, currency: CNY, effective_from: 2024-01-01, input: 10, output: 20}
"""


def write_book(folder: Path, text: str = BOOK) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.yaml").write_text(text)
    return folder


def event(**fields: Any) -> UsageEvent:
    """A priced event with sensible defaults; any field may be overridden."""
    n = next(_ids)
    tokens_in = fields.pop("input_tokens", 100)
    tokens_out = fields.pop("output_tokens", 20)
    cost = fields.pop("total_cost", Decimal("0.000140"))
    base: dict[str, Any] = {
        "request_id": f"req-{n:08d}", "ts": T0 + timedelta(minutes=n % 5000), "provider": "acme", "model": "m1",
        "model_requested": "m1", "endpoint": "chat.completions", "status_code": 200, "tenant_id": "t1",
        "feature": "chat", "input_tokens": tokens_in, "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out, "usage_source": "provider", "currency": "USD", "total_cost": cost,
        "cost_reporting": cost, "reporting_currency": "USD", "price_id": "acme/m1@2024-01-01T00:00:00Z",
        "pricing_status": "priced",
    }  # fmt: skip
    base.update(fields)
    return UsageEvent(**base)


def write_segment(path: Path, events: Iterable[UsageEvent]) -> Path:
    with path.open("wb") as out:
        for e in events:
            out.write(e.to_json() + b"\n")
    return path


def rollup_mismatches(con: DuckDBSink | duckdb.DuckDBPyConnection, deltas: bool = False) -> dict[str, int]:
    """For each rollup, how many rows differ from a recomputation over the raw events (0 everywhere = equal).
    With `deltas` (a lake before compaction folds them), a key may have several rows: their sums are compared."""
    keys = ", ".join(rollups.KEYS)
    sums = ", ".join(f"sum({m}) AS {m}" for m in rollups.MEASURE_NAMES)
    out = {}
    for table in rollups.TABLES:
        stored = f"SELECT {keys}, {sums} FROM {table} GROUP BY ALL HAVING sum(requests) <> 0" if deltas else (
            f"SELECT * FROM {table}"
        )  # fmt: skip
        recomputed = rollups.aggregate_sql(table, "llm_usage_events")
        sql = f"SELECT count(*) FROM (({stored} EXCEPT ALL {recomputed}) UNION ALL ({recomputed} EXCEPT ALL {stored}))"
        rows = con.query(sql) if isinstance(con, DuckDBSink) else con.execute(sql).fetchall()
        out[table] = rows[0][0]
    return out


def rows_per_key(con: DuckDBSink, table: str = "usage_rollup_hourly") -> int:
    """The most rows any one key of a rollup has (1 once compaction has folded the deltas)."""
    per_key = f"SELECT count(*) AS n FROM {table} GROUP BY {', '.join(rollups.KEYS)}"
    value: int = con.query(f"SELECT coalesce(max(n), 0) FROM ({per_key})")[0][0]
    return value


def count(sink: DuckDBSink, sql: str = "SELECT count(*) FROM llm_usage_events") -> int:
    value: int = sink.query(sql)[0][0]
    return value


def fill(sink: DuckDBSink, n: int, prefix: str = "bulk") -> None:
    """Store `n` events like `event()`'s defaults (acme m1, 100 in / 20 out, priced by BOOK), one every
    10 seconds from T0, with their rollups: a store bigger than a small memory limit, in a second."""
    columns = ("request_id, ts, provider, endpoint, model_requested, model, status_code, tenant_id, feature, "
               "input_tokens, output_tokens, total_tokens, usage_source, currency, total_cost, cost_reporting, "
               "reporting_currency, price_id, pricing_status")  # fmt: skip
    values = (
        f"printf('{prefix}-%08d', i), TIMESTAMPTZ '{T0.isoformat()}' + to_seconds(i * 10), 'acme', "
        "'chat.completions', 'm1', 'm1', 200, 't' || (i % 7), 'chat', 100, 20, 120, 'provider', 'USD', "
        "0.000140, 0.000140, 'USD', 'acme/m1@2024-01-01T00:00:00Z', 'priced'"
    )

    def insert(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"CREATE TEMP TABLE _bulk AS SELECT {values} FROM range({n}) r(i)")
        con.execute(f"INSERT INTO llm_usage_events ({columns}) SELECT * FROM _bulk")
        rollups.apply(con, f"(SELECT * FROM llm_usage_events WHERE request_id LIKE '{prefix}-%')")
        con.execute("DROP TABLE _bulk")

    sink.transaction(insert)
