"""End to end: a real Prometheus scrapes a live gateway while mixed traffic flows through it, then every
PromQL expression of every dashboard panel, dashboard variable, recording rule and alert rule is
evaluated through Prometheus' HTTP API and must return series with the expected labels.

How each kind of expression is checked:
- dashboard targets: an instant query at now with Grafana's variables replaced (artifacts.BUILTINS,
  multi-value variables by their `allValue`, `$tenant` by a tenant the traffic keeps by name); every
  series must carry the labels the target's legend names;
- dashboard variables: `label_values(selector, label)` through /api/v1/series, non-empty;
- recording rules: both the expression and the recorded series, with the labels the rule's level
  names (`tenant_currency:...` -> tenant, currency);
- alert rules: the expression with `bool` on every comparison (artifacts.with_bool), with the labels
  its annotations use; the traffic also makes MeterwayUnpricedModel fire and
  MeterwayProviderErrorRatioHigh go pending, checked through ALERTS.
The 7-day spend baseline rules run against the seconds of history this test has, so they prove
syntax, inputs and labels, not the statistics; the thresholds are proven by the promtool unit tests
(test_rules.py). The budget rules read `meterway_budget_spend_ratio`, which a stub target serves
here from `build_budget_gauges` until the governance code exports it.
Readiness is polled (/-/ready, then the queries themselves) with a deadline, never slept on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from metrics.definitions import build_budget_gauges
from reconcile.metrics import build_reconcile_gauges
from tests.metrics.artifacts import Query, alert_queries, dashboard_queries, recording_queries, variable_queries
from tests.metrics.prometheus_server import PrometheusServer, free_port
from tests.metrics.traffic import CONFIG, Traffic
from tests.support.gateway import LiveGateway

DEADLINE = 25.0


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    tmp = tmp_path_factory.mktemp("e2e")
    gw = LiveGateway.from_doc(tmp, CONFIG).start()
    budgets = CollectorRegistry()
    gauge = build_budget_gauges(budgets)
    gauge.labels("acme-daily").set(0.9)
    gauge.labels("all-monthly").set(1.2)
    reconciled = build_reconcile_gauges(budgets)  # set by reconciliations, which this traffic does not run
    reconciled.relative_difference.labels("openai").set(-0.1)
    reconciled.tolerance.labels("openai").set(0.05)
    reconciled.last_run.labels("openai").set_to_current_time()
    stub_port = free_port()
    stub, stub_thread = start_http_server(stub_port, addr="127.0.0.1", registry=budgets)
    server = PrometheusServer(Path(tmp), {"meterway": f"127.0.0.1:{gw.port}", "budgets": f"127.0.0.1:{stub_port}"})
    try:
        with Traffic(gw.url):
            server.start()
            yield server
    finally:
        server.stop()
        stub.shutdown()
        stub.server_close()
        stub_thread.join(10)
        gw.stop()


def problems_of(prom: PrometheusServer, queries: list[Query]) -> list[str]:
    problems = []
    for q in queries:
        result = prom.query(q.expr)
        if not result:
            problems.append(f"{q.where}: no data for {' '.join(q.expr.split())}")
            continue
        missing = {label for s in result for label in q.labels if label not in s["metric"]}
        if missing:
            problems.append(f"{q.where}: series without {sorted(missing)}: {result[0]['metric']}")
    return problems


def eventually(check: Any, deadline: float = DEADLINE) -> None:
    """Re-run `check` (which returns a list of problems) until it returns none or time is up."""
    end = time.monotonic() + deadline
    while True:
        problems = check()
        if not problems or time.monotonic() > end:
            break
        time.sleep(0.25)
    assert not problems, "\n".join(problems)


def test_prometheus_scrapes_the_gateway_and_loads_the_rules(prom: PrometheusServer) -> None:
    def check() -> list[str]:
        targets = prom.get("/api/v1/targets")["activeTargets"]
        down = [f"{t['labels']['job']}: {t['health']} {t.get('lastError')}" for t in targets if t["health"] != "up"]
        groups = prom.get("/api/v1/rules")["groups"]
        bad = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"] if r["health"] == "err"]
        return down + bad + ([] if prom.query("meterway_requests_total") else ["no samples yet"])

    eventually(check)
    assert len(prom.get("/api/v1/rules")["groups"]) == 6


def test_every_dashboard_query_returns_data_with_its_legend_labels(prom: PrometheusServer) -> None:
    queries = dashboard_queries()
    assert len(queries) > 50
    eventually(lambda: problems_of(prom, queries))


def test_every_dashboard_variable_has_values(prom: PrometheusServer) -> None:
    def check() -> list[str]:
        return [f"{where}: no values" for where, sel, label in variable_queries() if not prom.label_values(sel, label)]

    eventually(check)
    assert {"acme", "globex", "other", "none"} <= prom.label_values("meterway_cost_total", "tenant")


def test_every_recording_rule_returns_data_with_its_level_labels(prom: PrometheusServer) -> None:
    eventually(lambda: problems_of(prom, recording_queries()))


def test_every_alert_expression_returns_data_with_its_annotation_labels(prom: PrometheusServer) -> None:
    eventually(lambda: problems_of(prom, alert_queries()))


def test_the_traffic_trips_the_alerts_it_should(prom: PrometheusServer) -> None:
    expected = [
        'ALERTS{alertname="MeterwayUnpricedModel", alertstate="firing", model="mystery-model", provider="demo-a"}',
        'ALERTS{alertname="MeterwayProviderErrorRatioHigh", provider="demo-b"}',
        'ALERTS{alertname="MeterwayBudgetNearlySpent", alertstate="firing", budget="acme-daily"}',
        'ALERTS{alertname="MeterwayBudgetExhausted", alertstate="firing", budget="all-monthly"}',
    ]
    eventually(lambda: [f"not active: {q}" for q in expected if not prom.query(q)])
    quiet = 'ALERTS{alertname=~"MeterwayEventsDropped|MeterwayEventBacklog|MeterwaySpendSpike"}'
    assert prom.query(quiet) == []
