"""Storage benchmark: how fast the event writer stores, and how fast reports answer, from rollups vs raw events.

Not part of `make test`. Three measurements, on a temporary DuckDB file:

1. Writer: N events submitted to the real `EventWriter` + `DuckDBSink` (journal, rotation, load,
   rollups) as fast as one event loop can; prints the journal cost per event and the sustained
   end-to-end rate (submitted until stored and rolled up).
2. Bulk: `--events` synthetic events (default 1M; `--events 10000000` for 10M) spread over a year,
   50 tenants each using 2 of 8 models and 2 of 10 features, generated inside DuckDB, then rolled up in
   one pass. Then the
   cost of one incremental 1,000-event segment load into that full table (the writer's per-flush work).
3. Reports: each report the admin API and CLI serve, timed from the rollups (`storage.queries`) and
   the same aggregate computed from raw events; the median of `--repeat` runs.

    python -m bench.storage_bench [--events 1000000] [--writer-events 200000] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from storage import queries, rollups
from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent
from storage.timerange import TimeRange, parse_month, parse_range
from storage.writer import EventWriter

START = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def template(i: int) -> UsageEvent:
    return UsageEvent(
        request_id="", ts=START, provider=["openai", "dashscope", "deepseek", "anthropic"][i % 4],
        endpoint="chat.completions", model=f"model-{i % 8}", model_requested=f"model-{i % 8}", status_code=200,
        duration_ms=812.5, tenant_id=f"tenant-{i % 50}", feature=f"feature-{i % 10}", input_tokens=1200,
        cached_input_tokens=200, output_tokens=300, total_tokens=1500, usage_source="provider", currency="USD",
        input_cost=Decimal("0.000150000000"), cached_input_cost=Decimal("0.000012500000"),
        cache_write_cost=Decimal("0"), output_cost=Decimal("0.000180000000"), total_cost=Decimal("0.000342500000"),
        cost_reporting=Decimal("0.000342500000"), reporting_currency="USD", price_id="openai/model@2025-01-01",
        pricing_status="priced",
    )  # fmt: skip


async def bench_writer(folder: Path, n: int) -> dict[str, float]:
    sink = DuckDBSink(folder / "writer.duckdb")
    writer = EventWriter(sink, folder / "writer.journal", flush_interval=0.2)
    await writer.start()
    templates = [template(i) for i in range(400)]
    started = time.perf_counter()
    journal = 0.0
    for i in range(n):
        event = templates[i % 400]
        event.request_id = f"w{i:012d}"
        event.ts = START + timedelta(milliseconds=i * 37)
        t = time.perf_counter()
        writer.submit(event)
        journal += time.perf_counter() - t
        if i % 500 == 499:
            await asyncio.sleep(0)  # a serving loop yields between requests; the flush task runs then
    submitted = time.perf_counter() - started
    await writer.flush()
    stored = time.perf_counter() - started
    await writer.stop()
    return {"events": n, "journal_us_per_event": journal / n * 1e6, "submit_rate": n / submitted,
            "stored_rate": n / stored, "seconds": stored}  # fmt: skip


BULK_SQL = """
INSERT INTO llm_usage_events (request_id, ts, duration_ms, tenant_id, user_id, feature, tags, provider, endpoint,
    model_requested, model, stream, status_code, error_type, input_tokens, cached_input_tokens, cache_write_tokens,
    output_tokens, reasoning_tokens, total_tokens, usage_source, currency, input_cost, cached_input_cost,
    cache_write_cost, output_cost, total_cost, cost_reporting, reporting_currency, price_id, pricing_status)
SELECT printf('b%012d', i), TIMESTAMPTZ '2025-01-01' + to_microseconds(CAST(i * {step} AS BIGINT)), 500 + i % 900,
    'tenant-' || (i * 7919 % 50), 'user-' || (i % 997), 'feature-' || ((i * 7919 % 50 + i // 2 % 2) % 10), '{{}}',
    ['openai', 'dashscope', 'deepseek', 'anthropic'][1 + (i * 7919 % 50 + i % 2) % 4], 'chat.completions',
    'model-' || ((i * 7919 % 50 + i % 2) % 8), 'model-' || ((i * 7919 % 50 + i % 2) % 8), i % 2 = 0,
    CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END,
    CASE WHEN i % 50 = 0 THEN 'upstream_error' END, 200 + i % 3000, (i % 3000) // 4, 0, 50 + i % 700, 0,
    250 + i % 3000 + i % 700, 'provider', CASE WHEN (i * 7919 % 50 + i % 2) % 4 = 1 THEN 'CNY' ELSE 'USD' END,
    (i % 3000) * 0.00000025, 0, 0, (i % 700) * 0.000001, (i % 3000) * 0.00000025 + (i % 700) * 0.000001,
    ((i % 3000) * 0.00000025 + (i % 700) * 0.000001)
        * CASE WHEN (i * 7919 % 50 + i % 2) % 4 = 1 THEN 0.14 ELSE 1 END, 'USD', 'p@2025-01-01', 'priced'
FROM range({n}) t(i)
"""


def bulk(sink: DuckDBSink, n: int) -> dict[str, float]:
    step = (NOW - START).total_seconds() * 1e6 / n
    t = time.perf_counter()
    sink.transaction(lambda con: con.execute(BULK_SQL.format(n=n, step=step)))
    inserted = time.perf_counter() - t
    t = time.perf_counter()
    sink.transaction(lambda con: rollups.apply(con, "llm_usage_events"))
    rolled = time.perf_counter() - t
    rows = {table: sink.query(f"SELECT count(*) FROM {table}")[0][0] for table in rollups.TABLES}
    return {"insert_s": inserted, "rollup_s": rolled, **{f"{k}_rows": v for k, v in rows.items()}}


def incremental(sink: DuckDBSink, folder: Path) -> float:
    """Milliseconds to load one 1,000-event journal segment into the full store (insert + rollups)."""
    times = []
    for round_ in range(5):
        segment = folder / f"inc-{round_}.jsonl"
        with segment.open("wb") as out:
            for i in range(1000):
                event = template(i)
                event.request_id = f"inc{round_}-{i:06d}"
                event.ts = NOW - timedelta(minutes=5) + timedelta(milliseconds=i * 50)
                out.write(event.to_json() + b"\n")
        t = time.perf_counter()
        sink.load_segment(segment)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def raw_sql(key: str, where: str = "TRUE") -> str:
    return (
        f"SELECT {key}, reporting_currency, currency, count(*), sum(total_tokens), sum(total_cost), "
        f"sum(cost_reporting) FROM llm_usage_events WHERE {where} AND ts >= ? AND ts < ? GROUP BY ALL"
    )


def reports(sink: DuckDBSink, repeat: int) -> list[tuple[str, float, float]]:
    everything = TimeRange(START - timedelta(days=1), NOW + timedelta(days=1))
    month = parse_month("2025-06")
    last30 = parse_range("30d", None, NOW)
    last7 = parse_range("7d", None, NOW)
    last72h = parse_range("72h", None, NOW)
    none = queries.Filters()
    acme = queries.Filters(tenant="tenant-7")
    cases: list[tuple[str, Callable[[Any], object], str, TimeRange]] = [
        ("summary, all tenants, all time", lambda c: queries.summary(c, everything, none, "USD"), "tenant_id",
         everything),
        ("tenant summary, 30 days", lambda c: queries.summary(c, last30, acme, "USD"), "model", last30),
        ("cost by model, all time", lambda c: queries.costs_by(c, "model", everything, none), "model", everything),
        ("cost by feature, all time", lambda c: queries.costs_by(c, "feature", everything, none), "feature",
         everything),
        ("top tenants, 7 days", lambda c: queries.costs_by(c, "tenant", last7, none, 10), "tenant_id", last7),
        ("daily series, all time", lambda c: queries.costs_by(c, "day", everything, none),
         "date_trunc('day', ts)", everything),
        ("token trend, 72 hours", lambda c: queries.token_trend(c, last72h, none, "USD"), "date_trunc('hour', ts)",
         last72h),
        ("monthly bill", lambda c: queries.bill(c, month, "USD"), "tenant_id, provider, model", month),
    ]  # fmt: skip
    out = []
    with sink.reader() as cur:
        for name, run, key, rng in cases:
            fast = _median(lambda: run(cur), repeat)  # noqa: B023
            slow = _median(lambda: cur.execute(raw_sql(key), [rng.since, rng.until]).fetchall(), repeat)  # noqa: B023
            out.append((name, fast, slow))
    return out


def _median(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="synthetic events for the report benchmark")
    parser.add_argument("--writer-events", type=int, default=200_000, help="events pushed through the writer")
    parser.add_argument("--repeat", type=int, default=3, help="runs per report (the median is shown)")
    parser.add_argument("--dir", type=Path, help="where to put the DuckDB files (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        w = asyncio.run(bench_writer(folder, args.writer_events))
        print(f"writer: {w['events']:,} events; journal {w['journal_us_per_event']:.1f} µs/event on the request path; "
              f"submitted {w['submit_rate']:,.0f}/s; stored with rollups {w['stored_rate']:,.0f}/s")  # fmt: skip
        sink = DuckDBSink(folder / "reports.duckdb")
        try:
            b = bulk(sink, args.events)
            print(f"bulk: {args.events:,} events inserted in {b['insert_s']:.1f} s, "
                  f"rolled up in {b['rollup_s']:.1f} s; rollup rows: hourly {b['usage_rollup_hourly_rows']:,}, "
                  f"daily {b['usage_rollup_daily_rows']:,}, monthly {b['usage_rollup_monthly_rows']:,}")  # fmt: skip
            print(f"incremental: one 1,000-event segment into {args.events:,} stored events: "
                  f"{incremental(sink, folder):.1f} ms")  # fmt: skip
            print(f"\n{'report':34} {'rollups ms':>11} {'raw ms':>9} {'speedup':>8}")
            for name, fast, slow in reports(sink, args.repeat):
                print(f"{name:34} {fast:11.1f} {slow:9.1f} {slow / fast:7.1f}x")
        finally:
            sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
