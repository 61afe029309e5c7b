"""Label folding keeps the series count bounded however many tenants, users or models show up."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from prometheus_client import CollectorRegistry

from metrics.config import LabelPolicy, MetricsConfig
from metrics.definitions import build_metrics
from metrics.labels import MISSING, OTHER, LabelFolder, SharedAdmissions
from metrics.recorder import MetricsRecorder
from storage.event import UsageEvent

AT = datetime(2025, 10, 1, tzinfo=UTC)


def test_top_n_keeps_the_first_n_names() -> None:
    folder = LabelFolder(LabelPolicy("top_n", 2))
    assert [folder.fold(v) for v in ("a", "b", "c", "a", "b", "c")] == ["a", "b", OTHER, "a", "b", OTHER]
    assert folder.named == ("a", "b")


def test_workers_sharing_a_directory_admit_the_same_first_n(tmp_path: Path) -> None:
    """Two workers' folders: a value one admitted keeps its name in the other, and N is N for both."""
    first, second = (LabelFolder(LabelPolicy("top_n", 3), SharedAdmissions(tmp_path, "tenant")) for _ in range(2))
    assert [first.fold(v) for v in ("a", "b")] == ["a", "b"]
    assert [second.fold(v) for v in ("c", "a", "d")] == ["c", "a", OTHER]
    assert [first.fold(v) for v in ("c", "d", "e", "b")] == ["c", OTHER, OTHER, "b"]
    assert first.named == second.named == ("a", "b", "c")
    assert (tmp_path / "labels_tenant.txt").read_text() == "a\nb\nc\n"
    models = LabelFolder(LabelPolicy("top_n", 5), SharedAdmissions(tmp_path, "model"))
    assert models.fold("line\nbreak") == OTHER and models.fold("m") == "m"
    assert (tmp_path / "labels_model.txt").read_text() == "m\n"


def test_a_value_holding_another_line_break_takes_one_shared_slot(tmp_path: Path) -> None:
    """Tenant ids come from headers: a Unicode line separator inside one is part of the value, not two values."""
    first, second = (LabelFolder(LabelPolicy("top_n", 3), SharedAdmissions(tmp_path, "tenant")) for _ in range(2))
    odd = "line\u2028sep\x85x"
    assert [first.fold(v) for v in (odd, "alpha")] == [odd, "alpha"]
    assert [second.fold(v) for v in (odd, "beta", "gamma")] == [odd, "beta", OTHER]
    assert first.fold("beta") == "beta" and first.named == second.named == (odd, "alpha", "beta")


def test_allow_list_and_missing_values() -> None:
    folder = LabelFolder(LabelPolicy("allow_list", 0, ("chat", "search")))
    assert [folder.fold(v) for v in ("chat", "search", "summarize", None, "")] == [
        "chat", "search", OTHER, MISSING, MISSING,
    ]  # fmt: skip


def test_disabled_label_and_overlong_values() -> None:
    assert LabelFolder(LabelPolicy("none", 0)).fold("acme") == ""
    folder = LabelFolder(LabelPolicy("top_n", 5))
    assert folder.fold("x" * 101) == OTHER
    assert folder.named == ()


def _event(i: int) -> UsageEvent:
    return UsageEvent(
        f"r{i}", AT, provider="openai", endpoint="chat.completions", model="gpt-4o-mini", status_code=200,
        duration_ms=900.0, tenant_id=f"tenant-{i}", user_id=f"user-{i}", feature=f"feature-{i % 7}",
        input_tokens=100, output_tokens=20, usage_source="provider", pricing_status="priced",
        cost_reporting=Decimal("0.0001"),
    )  # fmt: skip


def _series(registry: CollectorRegistry) -> int:
    return sum(len(family.samples) for family in registry.collect())


def test_ten_thousand_tenants_keep_the_series_count_bounded() -> None:
    config = MetricsConfig(tenant=LabelPolicy("top_n", 20), user=LabelPolicy("top_n", 5))
    registry = CollectorRegistry()
    recorder = MetricsRecorder(build_metrics(registry, attribution=("tenant", "feature", "user")), config, "USD")
    for i in range(100):
        recorder.record(_event(i))
    recorder.flush()
    after_100 = _series(registry)
    for i in range(100, 10_000):
        recorder.record(_event(i))
    recorder.flush()

    assert _series(registry) == after_100, "series stop growing once the top-N is full"
    tenants = {s.labels["tenant"] for f in registry.collect() for s in f.samples if "tenant" in s.labels}
    assert len(tenants) == 21 and OTHER in tenants
    assert recorder.series_count <= 21 * 7 * 6
    requests = [s for f in registry.collect() for s in f.samples if s.name == "meterway_requests_total"]
    assert sum(s.value for s in requests) == 10_000, "folded traffic is counted, not lost"
    assert sum(s.value for s in requests if s.labels["tenant"] == OTHER) == 10_000 - 20


def test_client_chosen_models_and_endpoints_are_bounded_too() -> None:
    config = MetricsConfig(model=LabelPolicy("top_n", 3), endpoint=LabelPolicy("top_n", 2))
    registry = CollectorRegistry()
    recorder = MetricsRecorder(build_metrics(registry), config, "USD")
    for i in range(2_000):
        event = _event(0)
        event.model, event.endpoint = f"model-{i}", f"raw.path.{i}"
        recorder.record(event)
    models = {s.labels["model"] for f in registry.collect() for s in f.samples if "model" in s.labels}
    assert models == {"model-0", "model-1", "model-2", OTHER}


def test_names_the_provider_refused_do_not_take_the_slots_of_names_in_use() -> None:
    """A client probing paths (404) or mistyping models first must not leave the real ones as `other`."""
    config = MetricsConfig(model=LabelPolicy("top_n", 2), endpoint=LabelPolicy("top_n", 2))
    registry = CollectorRegistry()
    recorder = MetricsRecorder(build_metrics(registry), config, "USD")
    for i in range(50):
        junk = _event(i)
        junk.model, junk.endpoint, junk.status_code = f"gpt-{i}", f"admin.probe{i}", 404
        recorder.record(junk)
    recorder.record(_event(100))
    failed = _event(101)
    failed.status_code = 404  # a name already in use keeps it whatever the answer
    recorder.record(failed)
    limited = _event(102)
    limited.model, limited.status_code = "gpt-4o", 429  # a name the provider knows, refused for now
    recorder.record(limited)
    recorder.flush()
    requests: dict[tuple[str, str, str], float] = {}
    for sample in (s for f in registry.collect() for s in f.samples if s.name == "meterway_requests_total"):
        key = (sample.labels["model"], sample.labels["endpoint"], sample.labels["status_class"])
        requests[key] = requests.get(key, 0) + sample.value
    assert requests == {
        (OTHER, OTHER, "4xx"): 50,
        ("gpt-4o-mini", "chat.completions", "2xx"): 1,
        ("gpt-4o-mini", "chat.completions", "4xx"): 1,
        ("gpt-4o", "chat.completions", "4xx"): 1,
    }
