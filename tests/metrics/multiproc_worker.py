"""One gateway worker in prometheus-client multiprocess mode, run as a subprocess by the tests.

`python -m tests.metrics.multiproc_worker N [TENANT ...]` (with PROMETHEUS_MULTIPROC_DIR set) records
N events for tenant acme and one for each TENANT, some writer stats, a budget gauge and a
reconciliation gauge through a `MetricsExporter`, then prints what its `/metrics` would serve.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal

from metrics.definitions import build_budget_gauges
from metrics.exporter import MetricsExporter
from reconcile.metrics import build_reconcile_gauges
from storage.event import UsageEvent
from storage.writer import WriterStats


def main(count: int, tenants: list[str]) -> None:
    stats = WriterStats()
    exporter = MetricsExporter.build(None, currency="USD", writer_stats=stats)
    assert exporter.multiproc is not None, "the worker must run in multiprocess mode"
    for i, tenant in enumerate(["acme"] * count + tenants):
        event = UsageEvent(
            f"r{i}", datetime.now(UTC), provider="demo", endpoint="chat.completions", model="gpt-4o-mini",
            status_code=200, duration_ms=1200.0, tenant_id=tenant, feature="chat", input_tokens=100,
            output_tokens=10, usage_source="provider", pricing_status="priced", cost_reporting=Decimal("0.25"),
        )  # fmt: skip
        exporter.record(event)
    stats.submitted, stats.pending, stats.dropped = count, 2, 1
    # what governance and reconciliation define beside the request metrics, as the app does
    build_budget_gauges(exporter.definitions).labels("acme-daily").set(0.5)
    build_reconcile_gauges(exporter.definitions).relative_difference.labels("openai").set(0.01)
    exporter.sync()
    sys.stdout.write(exporter.render()[0].decode())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
