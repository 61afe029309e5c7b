"""The reconciliation metrics, built on an injected registry.

    meterway_reconcile_relative_difference{provider}   (gateway - provider) / provider of the latest
                                                        report: cost, else input + output tokens
    meterway_reconcile_tolerance{provider}             the tolerance that report used
    meterway_reconcile_last_run_timestamp_seconds{provider}

The alert rule in dashboards/prometheus/rules/meterway-reconcile.yml compares the first with the
second. A report with nothing to compare sets the difference to NaN, so an old value cannot keep
an alert firing. Under several workers the most recent value written by any of them is exported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from reconcile.report import Report


@dataclass(frozen=True, slots=True)
class ReconcileGauges:
    relative_difference: Gauge
    tolerance: Gauge
    last_run: Gauge

    def record(self, report: Report) -> None:
        value = report.relative_difference
        self.relative_difference.labels(report.provider).set(math.nan if value is None else float(value))
        self.tolerance.labels(report.provider).set(float(report.tolerance))
        self.last_run.labels(report.provider).set_to_current_time()


def build_reconcile_gauges(registry: CollectorRegistry | None) -> ReconcileGauges:
    return ReconcileGauges(
        relative_difference=Gauge(
            "meterway_reconcile_relative_difference",
            "Latest reconciliation: (gateway - provider) / provider, of cost (else input + output tokens).",
            ("provider",),
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
        tolerance=Gauge(
            "meterway_reconcile_tolerance",
            "The relative tolerance the latest reconciliation used (a difference within it is a match).",
            ("provider",),
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
        last_run=Gauge(
            "meterway_reconcile_last_run_timestamp_seconds",
            "When the latest reconciliation with the provider ran (Unix time).",
            ("provider",),
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
    )
