"""Multiprocess mode: what two workers record into one directory is summed by any scrape.

Each worker is a real subprocess with PROMETHEUS_MULTIPROC_DIR set (prometheus-client picks its mode
at import, so it cannot be switched inside the test process). The workers run one after the other
and exit, as restarted workers would: the second one's `/metrics` and this process's aggregation
must both still count the first one's requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from metrics.multiprocess import ENV, exposition_registry, forget_dead_workers, multiproc_dir, reset_dir

REPO = Path(__file__).resolve().parents[2]
LABELS = {"provider": "demo", "model": "gpt-4o-mini", "endpoint": "chat.completions", "status_class": "2xx",
          "tenant": "acme", "feature": "chat"}  # fmt: skip


def run_worker(directory: Path, count: int, *tenants: str) -> str:
    env = {**os.environ, ENV: str(directory)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.metrics.multiproc_worker", str(count), *tenants],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def exposed(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return s.value
    return None


def test_two_workers_are_summed(tmp_path: Path) -> None:
    reset_dir(tmp_path)
    run_worker(tmp_path, 3)
    second = run_worker(tmp_path, 4)

    assert exposed(second, "meterway_requests_total", LABELS) == 7, "the exited worker's counts survive"
    assert exposed(second, "meterway_writer_events_dropped_total") == 2
    assert exposed(second, "meterway_writer_events_submitted_total") == 7
    cost_labels = {"provider": "demo", "model": "gpt-4o-mini", "currency": "USD", "tenant": "acme", "feature": "chat"}
    assert exposed(second, "meterway_cost_total", cost_labels) == pytest.approx(1.75)

    registry = exposition_registry(tmp_path)
    duration = {"provider": "demo", "model": "gpt-4o-mini", "stream": "false"}
    assert registry.get_sample_value("meterway_request_duration_seconds_count", duration) == 7
    assert registry.get_sample_value("meterway_request_duration_seconds_bucket", {**duration, "le": "1.0"}) == 0
    assert registry.get_sample_value("meterway_request_duration_seconds_bucket", {**duration, "le": "2.0"}) == 7
    tokens = {k: v for k, v in LABELS.items() if k not in ("endpoint", "status_class")}
    assert registry.get_sample_value("meterway_tokens_total", {**tokens, "type": "input"}) == 700


def test_workers_fold_tenants_alike(tmp_path: Path) -> None:
    """The first 20 tenants any worker sees keep their names in every worker (tenant's top_n is 20)."""
    reset_dir(tmp_path)
    run_worker(tmp_path, 0, *(f"t{i}" for i in range(25)))
    second = run_worker(tmp_path, 0, "t5", "t30")
    assert exposed(second, "meterway_requests_total", {**LABELS, "tenant": "t5"}) == 2
    assert exposed(second, "meterway_requests_total", {**LABELS, "tenant": "other"}) == 5 + 1
    assert exposed(second, "meterway_requests_total", {**LABELS, "tenant": "t30"}) is None


def test_every_series_is_exposed_once(tmp_path: Path) -> None:
    """Metrics defined beside the request metrics (budgets, reconciliation) reach /metrics through the
    files only, so no series appears twice (Prometheus rejects a scrape with duplicate series)."""
    reset_dir(tmp_path)
    text = run_worker(tmp_path, 2)
    series = [
        (s.name, tuple(sorted(s.labels.items()))) for f in text_string_to_metric_families(text) for s in f.samples
    ]
    assert len(series) == len(set(series)), sorted({x for x in series if series.count(x) > 1})
    assert exposed(text, "meterway_budget_spend_ratio", {"budget": "acme-daily"}) == 0.5
    assert exposed(text, "meterway_reconcile_relative_difference", {"provider": "openai"}) == 0.01


def test_queue_depth_of_exited_workers_stops_counting(tmp_path: Path) -> None:
    reset_dir(tmp_path)
    run_worker(tmp_path, 1)
    run_worker(tmp_path, 1)
    assert exposition_registry(tmp_path).get_sample_value("meterway_writer_pending_events") == 4

    assert len(forget_dead_workers(tmp_path)) == 2
    assert exposition_registry(tmp_path).get_sample_value("meterway_writer_pending_events") in (None, 0)
    assert exposition_registry(tmp_path).get_sample_value("meterway_requests_total", LABELS) == 2


def test_multiprocess_mode_needs_the_variable_before_import(tmp_path: Path) -> None:
    assert multiproc_dir({}) is None
    with pytest.raises(RuntimeError, match="imported before"):
        multiproc_dir({ENV: str(tmp_path)})  # this test process imported prometheus_client without it


def test_reset_dir_empties_earlier_runs(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"x")
    reset_dir(tmp_path)
    assert not list(tmp_path.iterdir())
    assert isinstance(exposition_registry(tmp_path), CollectorRegistry)
