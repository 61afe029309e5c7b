"""The recorder against a fresh registry: every recorded transcript shows up in the metrics it should."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from metrics.config import LabelPolicy, MetricsConfig
from metrics.definitions import TOKEN_TYPES, build_budget_gauges, build_metrics
from metrics.recorder import MetricsRecorder
from storage.event import UsageEvent
from tests.metrics.transcripts import AT, NAMES, transcript_event

TOKEN_FIELDS = dict(zip(TOKEN_TYPES, ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
                                      "reasoning_tokens"), strict=True))  # fmt: skip


class PublishingRecorder(MetricsRecorder):
    """Publishes after every event, as a scrape would see it."""

    def record(self, event: UsageEvent) -> None:
        super().record(event)
        self.flush()


def recorder(
    config: MetricsConfig | None = None, cls: type[MetricsRecorder] = PublishingRecorder
) -> tuple[MetricsRecorder, CollectorRegistry]:
    config = config or MetricsConfig()
    registry = CollectorRegistry()
    attribution = tuple(n for n in ("tenant", "feature", "user") if getattr(config, n).enabled)
    metrics = build_metrics(registry, attribution=attribution, naming=config.naming)
    return cls(metrics, config, "USD"), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.mark.parametrize("name", NAMES)
def test_a_recorded_transcript_is_counted(name: str) -> None:
    event = transcript_event(name, tenant="acme", feature="chat")
    rec, reg = recorder()
    rec.record(event)

    pm = {"provider": event.provider or "none", "model": event.model or "none"}
    attr = {"tenant": "acme", "feature": "chat"}
    status_class = f"{event.status_code // 100}xx"
    assert value(reg, "meterway_requests_total", **pm, endpoint=event.endpoint or "", status_class=status_class,
                 **attr) == 1  # fmt: skip
    for token_type, field in TOKEN_FIELDS.items():
        assert value(reg, "meterway_tokens_total", **pm, type=token_type, **attr) == getattr(event, field), token_type
    cost = value(reg, "meterway_cost_total", **pm, currency="USD", **attr)
    if event.cost_reporting:
        assert cost == pytest.approx(float(event.cost_reporting))
    else:
        assert cost in (None, 0.0)
    unpriced = event.pricing_status == "unpriced" and event.usage_source != "none"
    assert value(reg, "meterway_unpriced_requests_total", **pm) == (1 if unpriced else 0)
    assert value(reg, "meterway_estimated_usage_requests_total", **pm) == 0
    errors = value(reg, "meterway_errors_total", **pm, error_type="upstream_error")
    assert errors == (1 if event.error_type else None)
    stream = "true" if event.stream else "false"
    assert value(reg, "meterway_request_duration_seconds_count", **pm, stream=stream) == 1
    assert value(reg, "meterway_request_duration_seconds_sum", **pm, stream=stream) == pytest.approx(1.5)
    assert value(reg, "meterway_time_to_first_token_seconds_count", **pm) == (1 if event.stream else 0)


def test_totals_over_all_transcripts_add_up() -> None:
    events = [transcript_event(n, tenant=t) for n in NAMES for t in ("acme", "globex")]
    rec, reg = recorder()
    for event in events:
        rec.record(event)
    assert sum(s.value for s in _samples(reg, "meterway_requests_total")) == len(events)
    for token_type, field in TOKEN_FIELDS.items():
        got = sum(s.value for s in _samples(reg, "meterway_tokens_total") if s.labels["type"] == token_type)
        assert got == sum(getattr(e, field) for e in events), token_type
    total_cost = sum(s.value for s in _samples(reg, "meterway_cost_total"))
    assert total_cost == pytest.approx(sum(float(e.cost_reporting or 0) for e in events))
    by_tenant = {s.labels["tenant"] for s in _samples(reg, "meterway_cost_total")}
    assert by_tenant == {"acme", "globex"}


def test_estimated_usage_and_gateway_errors() -> None:
    rec, reg = recorder()
    base = transcript_event("openai_chat_stream_include_usage_toolcall.json")
    rec.record(dataclasses.replace(base, usage_source="estimated"))
    rec.record(UsageEvent("r2", AT, status_code=404, error_type="model_not_found", tenant_id=None))
    pm = {"provider": "openai", "model": base.model or ""}
    assert value(reg, "meterway_estimated_usage_requests_total", **pm) == 1
    none = {"provider": "none", "model": "none"}
    assert value(reg, "meterway_errors_total", **none, error_type="model_not_found") == 1
    attr = {"tenant": "none", "feature": "none"}
    assert value(reg, "meterway_requests_total", **none, endpoint="none", status_class="4xx", **attr) == 1
    assert value(reg, "meterway_unpriced_requests_total", **none) == 0, "no usage: nothing went unpriced"


def test_one_label_tuple_is_built_once() -> None:
    rec, _ = recorder()
    event = transcript_event("moonshot_nonstream_v1_8k.json")
    for _ in range(100):
        rec.record(event)
    assert rec.series_count == 1


def test_user_label_when_enabled_and_folding() -> None:
    config = MetricsConfig(user=LabelPolicy("top_n", 1), feature=LabelPolicy("allow_list", 0, ("chat",)))
    rec, reg = recorder(config)
    base = transcript_event("moonshot_nonstream_v1_8k.json")
    for user, feature in (("u1", "chat"), ("u2", "search"), ("u1", None)):
        rec.record(dataclasses.replace(base, user_id=user, feature=feature))
    seen = {(s.labels["user"], s.labels["feature"]) for s in _samples(reg, "meterway_requests_total")}
    assert seen == {("u1", "chat"), ("other", "other"), ("u1", "none")}


def test_opentelemetry_names() -> None:
    rec, reg = recorder(MetricsConfig(naming="opentelemetry"))
    event = transcript_event("deepseek_chat_nonstream_cache_hit.json")
    rec.record(event)
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "deepseek",
        "gen_ai_request_model": event.model_requested or "",
        "gen_ai_response_model": event.model or "",
    }
    assert value(reg, "gen_ai_client_token_usage_sum", **labels, gen_ai_token_type="input") == event.input_tokens
    assert value(reg, "gen_ai_client_token_usage_sum", **labels, gen_ai_token_type="output") == event.output_tokens
    assert value(reg, "gen_ai_client_operation_duration_seconds_count", **labels, error_type="") == 1
    assert not _samples(reg, "meterway_tokens_total"), "opentelemetry naming replaces the token counter"
    assert _samples(reg, "meterway_cost_total"), "cost has no OpenTelemetry name and keeps its own"


def test_both_namings() -> None:
    rec, reg = recorder(MetricsConfig(naming="both"))
    rec.record(transcript_event("openai_error_429_rate_limit_tpm.json"))
    assert _samples(reg, "meterway_request_duration_seconds_count")
    errs = [s for s in _samples(reg, "gen_ai_client_operation_duration_seconds_count") if s.labels["error_type"]]
    assert [s.labels["error_type"] for s in errs] == ["upstream_error"]


def test_budget_gauge() -> None:
    registry = CollectorRegistry()
    build_budget_gauges(registry).labels("acme-daily").set(0.42)
    assert registry.get_sample_value("meterway_budget_spend_ratio", {"budget": "acme-daily"}) == 0.42


def _samples(registry: CollectorRegistry, name: str) -> list[Sample]:
    return [s for m in registry.collect() for s in m.samples if s.name == name]


def test_counts_wait_for_flush_and_then_equal_direct_observation() -> None:
    """Recording only adds to pending sums; a flush publishes exactly what prometheus-client's own
    `inc`/`observe` calls would have, bucket by bucket."""
    rec, reg = recorder(MetricsConfig(naming="both"), cls=MetricsRecorder)
    base = transcript_event("openai_chat_stream_include_usage_toolcall.json", tenant="acme", feature="chat")
    durations = [0.0, 0.05, 0.0500001, 0.1, 0.3, 1.0, 7.5, 1200.0, 5000.0]
    events = [dataclasses.replace(base, request_id=f"r{i}", duration_ms=d * 1000, ttft_ms=d * 500)
              for i, d in enumerate(durations)]  # fmt: skip
    for event in events:
        rec.record(event)
    pm = {"provider": base.provider or "none", "model": base.model or "none"}
    assert value(reg, "meterway_requests_total", **pm, endpoint="chat.completions", status_class="2xx",
                 tenant="acme", feature="chat") == 0.0  # fmt: skip

    rec.flush()
    direct = CollectorRegistry()
    metrics = build_metrics(direct, naming="both")
    for event in events:
        metrics.requests.labels(pm["provider"], pm["model"], "chat.completions", "2xx", "acme", "chat").inc()
        assert metrics.duration is not None
        metrics.duration.labels(pm["provider"], pm["model"], "true").observe(event.duration_ms / 1000)
        metrics.ttft.labels(pm["provider"], pm["model"]).observe((event.ttft_ms or 0) / 1000)
    for name in (
        "meterway_requests_total",
        "meterway_request_duration_seconds",
        "meterway_time_to_first_token_seconds",
    ):
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in reg.collect() if m.name in name
               for s in m.samples if not s.name.endswith("_created")}  # fmt: skip
        want = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in direct.collect() if m.name in name
                for s in m.samples if not s.name.endswith("_created")}  # fmt: skip
        assert got and got == pytest.approx(want), name
    rec.flush()  # nothing pending: a second flush changes nothing
    assert value(reg, "meterway_requests_total", **pm, endpoint="chat.completions", status_class="2xx",
                 tenant="acme", feature="chat") == len(events)  # fmt: skip
