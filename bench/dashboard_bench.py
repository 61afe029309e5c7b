"""Dashboard benchmark: how long the server takes to draw a page over a store of 1M events.

Not part of `make test`. Loads `--events` synthetic events (default 1M) with the storage benchmark's
bulk path, rolls them up, then times what a request to /dashboard does on the server: every query of
the page (`gateway.dashboard.data.load`), the governance sections (`StoreInsights`: anomalies,
forecast, recommendations) and the HTML. Two layouts of the same number of events: spread over a
year (a long-lived gateway), and all inside the page's 30 days (a busy month; the latency table and
the recent requests then read a full day of raw events). Prints the median of `--repeat` draws.

    python -m bench.dashboard_bench [--events 1000000] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.storage_bench import BULK_SQL
from gateway.dashboard import data
from gateway.dashboard.insights import gather
from gateway.dashboard.pages import render
from gateway.dashboard.params import View
from gateway.dashboard.store_insights import StoreInsights
from governance.config import GovernanceConfig
from pricing.book import PriceBook
from pricing.pricer import DEFAULT_BOOK
from storage import rollups
from storage.duckdb_sink import DuckDBSink

START = datetime(2025, 1, 1, tzinfo=UTC)


def load(sink: DuckDBSink, events: int, span: timedelta) -> None:
    step = span.total_seconds() * 1e6 / events
    sink.transaction(lambda con: con.execute(BULK_SQL.format(n=events, step=step)))
    sink.transaction(lambda con: rollups.apply(con, "llm_usage_events"))


def draw(sink: DuckDBSink, insights: StoreInsights, view: View, now: datetime) -> tuple[float, float, float, int]:
    """Seconds for the queries, the governance sections and the HTML; and the page's size."""
    t0 = time.perf_counter()
    with sink.reader() as cur:
        found = data.load(cur, view, now, "USD")
    t1 = time.perf_counter()
    extra = gather(insights, view.page_tenant, now)
    t2 = time.perf_counter()
    html = render(found, extra, view)
    return t1 - t0, t2 - t1, time.perf_counter() - t2, len(html)


def bench(folder: Path, events: int, span: timedelta, repeat: int) -> None:
    sink = DuckDBSink(folder / f"dash-{span.days}.duckdb")
    try:
        t = time.perf_counter()
        load(sink, events, span)
        print(f"\n{events:,} events over {span.days} days loaded and rolled up in {time.perf_counter() - t:.1f} s")
        now = START + span
        book = PriceBook.load(DEFAULT_BOOK, reporting_currency="USD")
        insights = StoreInsights(sink, "USD", GovernanceConfig(), book)
        print(f"{'page':34} {'queries ms':>11} {'insights ms':>12} {'html ms':>8} {'total ms':>9} {'KB':>6}")
        for name, view in (("overview", View()), ("overview, price currencies", View(currency="price")),
                           ("overview, filtered requests", View(tenant="tenant-7", status="ok", since="7d")),
                           ("tenant page", View(tenant="tenant-7", page_tenant="tenant-7"))):  # fmt: skip
            runs = [draw(sink, insights, view, now) for _ in range(repeat)]
            q, i, h = (statistics.median(r[k] for r in runs) * 1000 for k in range(3))
            print(f"{name:34} {q:11.1f} {i:12.1f} {h:8.1f} {q + i + h:9.1f} {runs[0][3] / 1024:6.0f}")
    finally:
        sink.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="draws per page (the median is shown)")
    parser.add_argument("--dir", type=Path, help="where to put the DuckDB files (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for span in (timedelta(days=365), timedelta(days=30)):
            bench(Path(tmp), args.events, span, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
