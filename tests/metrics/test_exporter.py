"""`/metrics` on a live gateway, content negotiation, and the event writer's stats."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ConfigError
from metrics.exporter import MetricsExporter
from metrics.writer import WriterStatsCollector
from storage.writer import WriterStats
from tests.metrics.traffic import CONFIG, send_wave
from tests.support.gateway import LiveGateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    live = LiveGateway.from_doc(tmp_path_factory.mktemp("metrics"), CONFIG).start()
    yield live
    live.stop()


def scrape(gw: LiveGateway) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = httpx.get(f"{gw.url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples: list[tuple[dict[str, str], float]], **match: str) -> float:
    return sum(v for labels, v in samples if all(labels.get(k) == m for k, m in match.items()))


def test_traffic_through_the_gateway_shows_up_in_metrics(gw: LiveGateway) -> None:
    with httpx.Client(timeout=30) as client:
        statuses = send_wave(client, gw.url)
    m = scrape(gw)
    assert total(m["meterway_requests_total"]) == len(statuses)
    assert total(m["meterway_requests_total"], status_class="5xx") == statuses.count(500)
    assert total(m["meterway_requests_total"], provider="none", status_class="4xx") == statuses.count(404)
    assert {labels["tenant"] for labels, _ in m["meterway_requests_total"]} == {"acme", "globex", "other", "none"}
    assert {labels["feature"] for labels, _ in m["meterway_requests_total"]} == {"chat", "search", "other", "none"}
    assert total(m["meterway_cost_total"], currency="USD") > 0
    assert total(m["meterway_unpriced_requests_total"], model="mystery-model") == 2
    assert total(m["meterway_estimated_usage_requests_total"], provider="demo-est") == 1
    assert total(m["meterway_errors_total"], error_type="upstream_error") == statuses.count(500)
    assert total(m["meterway_time_to_first_token_seconds_count"]) >= 4
    assert total(m["meterway_writer_events_submitted_total"]) == len(statuses)
    assert "meterway_writer_pending_events" in m and "meterway_writer_events_dropped_total" in m


def test_openmetrics_and_gzip_are_negotiated(gw: LiveGateway) -> None:
    headers = {"accept": "application/openmetrics-text;version=1.0.0", "accept-encoding": "gzip"}
    r = httpx.get(f"{gw.url}/metrics", headers=headers, timeout=10)
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.headers["content-encoding"] == "gzip"
    assert r.text.rstrip().endswith("# EOF") and "meterway_requests" in r.text


def test_writer_stats_collector_reads_live_values() -> None:
    stats = WriterStats()
    registry = CollectorRegistry()
    registry.register(WriterStatsCollector(stats))
    stats.submitted, stats.pending, stats.dropped, stats.loaded = 10, 3, 1, 6
    assert registry.get_sample_value("meterway_writer_pending_events") == 3
    assert registry.get_sample_value("meterway_writer_events_submitted_total") == 10
    assert registry.get_sample_value("meterway_writer_events_dropped_total") == 1
    assert registry.get_sample_value("meterway_writer_events_stored_total") == 6


def test_render_without_a_gateway() -> None:
    exporter = MetricsExporter.build(None, currency="CNY", writer_stats=WriterStats())
    body, headers = exporter.render()
    assert headers == {"content-type": "text/plain; version=0.0.4; charset=utf-8"}
    assert b"meterway_writer_pending_events 0.0" in body
    assert exporter.multiproc is None
    assert gzip.decompress(exporter.render("", "gzip")[0]) == body


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"tenant_label": {"mode": "top"}}, "metrics.tenant_label.mode: expected one of top_n, allow_list, none"),
        ({"feature_label": {"mode": "allow_list"}}, "metrics.feature_label.allow: expected a non-empty list"),
        ({"user_label": {"mode": "top_n", "top_n": 0}}, "metrics.user_label.top_n: expected a whole number"),
        ({"model_label": {"mode": "none"}}, "metrics.model_label.mode: expected one of top_n, allow_list,"),
        ({"naming": "otel"}, "metrics.naming: expected one of meterway, opentelemetry, both"),
        ({"tenants": {}}, "metrics.tenants: unknown key"),
        (["x"], "metrics: expected a mapping"),
    ],
)
def test_a_bad_metrics_section_is_one_clear_line(section: object, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        MetricsExporter.build(section, currency="USD", writer_stats=WriterStats())
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(problem), err.value.problems
