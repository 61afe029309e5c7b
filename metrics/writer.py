"""The event writer's health as metrics: queue depth (events journaled but not yet stored) and counts.

One process: `WriterStatsCollector` reads `WriterStats` at scrape time, so the values are exact.
Several workers (prometheus-client multiprocess mode): each worker's `WriterStatsMirror` copies its
own stats into multiprocess-safe metrics (`sync()`, called periodically and before a scrape), and
the scrape sums them over the workers. The queue depth is a `livesum` gauge: a worker that has
exited no longer counts, while its counters keep their totals.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from storage.writer import WriterStats

PENDING = ("meterway_writer_pending_events", "Events journaled by the gateway but not yet loaded into storage.")
# (metric name without _total, WriterStats field, help)
COUNTERS = (
    ("meterway_writer_events_submitted", "submitted", "Events the gateway journaled."),
    ("meterway_writer_events_stored", "loaded", "Events loaded into storage."),
    ("meterway_writer_events_dropped", "dropped", "Events lost because the journal write failed."),
    ("meterway_writer_load_errors", "load_errors", "Failed attempts to load a journal segment into storage."),
    ("meterway_writer_backlog_full_events", "backlog_full", "Events journaled while the backlog was over its limit."),
)


class WriterStatsCollector:
    """A custom collector over one writer's live stats."""

    def __init__(self, stats: WriterStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*PENDING, value=self.stats.pending)
        for name, attr, help_text in COUNTERS:
            yield CounterMetricFamily(name, help_text, value=getattr(self.stats, attr, 0))


class WriterStatsMirror:
    """Copies one worker's stats into metrics that prometheus-client aggregates across processes."""

    def __init__(self, stats: WriterStats, registry: CollectorRegistry | None) -> None:
        self.stats = stats
        self.pending = Gauge(*PENDING, registry=registry, multiprocess_mode="livesum")
        self.counters = [(Counter(name, help_text, registry=registry), attr) for name, attr, help_text in COUNTERS]
        self._seen = {attr: 0 for _, attr, _ in COUNTERS}

    def sync(self) -> None:
        self.pending.set(self.stats.pending)
        for counter, attr in self.counters:
            value = getattr(self.stats, attr, 0)
            if value > self._seen[attr]:
                counter.inc(value - self._seen[attr])
                self._seen[attr] = value
