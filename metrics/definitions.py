"""Every metric the gateway exports, built on an injected registry by `build_metrics(registry, ...)`.

Names follow Prometheus conventions: a `meterway_` prefix, base units (`_seconds`), `_total` on
counters. Cost is a counter in the reporting currency, named by its `currency` label. Tenant,
feature and user labels are present only when their policy keeps them (see metrics.config).
With `naming: opentelemetry` the token and duration metrics use the OpenTelemetry GenAI names
(`gen_ai_client_token_usage`, `gen_ai_client_operation_duration_seconds`) instead; `both` exports
both. The writer's counters and queue depth come from metrics.writer; budget gauges from
`build_budget_gauges`, anomaly counts and month-end forecasts from `build_insight_metrics`, for the
governance code.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# LLM calls range from tens of milliseconds (embeddings, cache hits) to many minutes (long reasoning).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
# The OpenTelemetry GenAI semantic conventions' advised bucket boundaries.
GENAI_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

TOKEN_TYPES = ("input", "cached_input", "cache_write", "output", "reasoning")
ATTRIBUTION_LABELS = ("tenant", "feature", "user")
GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")


@dataclass(frozen=True, slots=True)
class MeterwayMetrics:
    attribution: tuple[str, ...]  # which of tenant/feature/user are labels, in that order
    requests: Counter
    cost: Counter
    errors: Counter
    unpriced: Counter
    estimated: Counter
    ttft: Histogram
    tokens: Counter | None = None
    duration: Histogram | None = None
    genai_tokens: Histogram | None = None
    genai_duration: Histogram | None = None


def build_metrics(
    registry: CollectorRegistry | None,
    *,
    attribution: tuple[str, ...] = ("tenant", "feature"),
    naming: str = "meterway",
) -> MeterwayMetrics:
    """The request metrics. `attribution` lists the attribution labels in use (a subset, in order)."""
    unknown = set(attribution) - set(ATTRIBUTION_LABELS)
    if unknown:
        raise ValueError(f"unknown attribution labels: {sorted(unknown)}")
    attr = tuple(a for a in ATTRIBUTION_LABELS if a in attribution)
    meterway = naming in ("meterway", "both")
    genai = naming in ("opentelemetry", "both")
    return MeterwayMetrics(
        attribution=attr,
        requests=Counter(
            "meterway_requests",
            "Requests that reached routing, by provider, model, endpoint and response status class.",
            ("provider", "model", "endpoint", "status_class", *attr),
            registry=registry,
        ),
        cost=Counter(
            "meterway_cost",
            "Cost of priced requests in the reporting currency (see the currency label).",
            ("provider", "model", "currency", *attr),
            registry=registry,
        ),
        errors=Counter(
            "meterway_errors",
            "Requests that ended in an error, by error class (upstream_error, timeout, stream_error, ...).",
            ("provider", "model", "error_type"),
            registry=registry,
        ),
        unpriced=Counter(
            "meterway_unpriced_requests",
            "Requests with usage that no price book entry matched (their cost is unknown, not zero).",
            ("provider", "model"),
            registry=registry,
        ),
        estimated=Counter(
            "meterway_estimated_usage_requests",
            "Requests whose token usage the gateway estimated because the provider reported none.",
            ("provider", "model"),
            registry=registry,
        ),
        ttft=Histogram(
            "meterway_time_to_first_token_seconds",
            "Time from request arrival to the first body bytes of a streamed response.",
            ("provider", "model"),
            buckets=TTFT_BUCKETS,
            registry=registry,
        ),
        tokens=_tokens(registry, attr) if meterway else None,
        duration=_duration(registry) if meterway else None,
        genai_tokens=_genai_tokens(registry) if genai else None,
        genai_duration=_genai_duration(registry) if genai else None,
    )


def _tokens(registry: CollectorRegistry | None, attr: tuple[str, ...]) -> Counter:
    return Counter(
        "meterway_tokens",
        "Tokens by type. input includes cached_input and cache_write; output includes reasoning.",
        ("provider", "model", "type", *attr),
        registry=registry,
    )


def _duration(registry: CollectorRegistry | None) -> Histogram:
    return Histogram(
        "meterway_request_duration_seconds",
        "Total time of a request through the gateway, errors included.",
        ("provider", "model", "stream"),
        buckets=DURATION_BUCKETS,
        registry=registry,
    )


def _genai_tokens(registry: CollectorRegistry | None) -> Histogram:
    return Histogram(
        "gen_ai_client_token_usage",
        "Number of input and output tokens used per request (OpenTelemetry GenAI semantic conventions).",
        (*GENAI_LABELS, "gen_ai_token_type"),
        buckets=GENAI_TOKEN_BUCKETS,
        registry=registry,
    )


def _genai_duration(registry: CollectorRegistry | None) -> Histogram:
    return Histogram(
        "gen_ai_client_operation_duration_seconds",
        "GenAI operation duration (OpenTelemetry GenAI semantic conventions).",
        (*GENAI_LABELS, "error_type"),
        buckets=GENAI_DURATION_BUCKETS,
        registry=registry,
    )


def build_budget_gauges(registry: CollectorRegistry | None) -> Gauge:
    """`meterway_budget_spend_ratio{budget}`: spend so far in the budget's period over its limit.

    The alert rules in dashboards/prometheus read it. Under several workers the most recent value
    written by any of them is exported.
    """
    return Gauge(
        "meterway_budget_spend_ratio",
        "Spend in the current budget period divided by the budget's limit (1 = fully spent).",
        ("budget",),
        registry=registry,
        multiprocess_mode="mostrecent",
    )


@dataclass(frozen=True, slots=True)
class InsightMetrics:
    anomalies: Counter
    forecast: Gauge


def build_insight_metrics(registry: CollectorRegistry | None) -> InsightMetrics:
    """What the governance schedule exports: anomalies found, and month-end spend forecasts.

    `meterway_forecast_month_end` has one series for the whole gateway (`tenant="__all__"`) and one per
    tenant among the few biggest, so its cardinality stays bounded however many tenants there are.
    """
    anomalies = Counter(
        "meterway_anomalies",
        "Hourly spend or token anomalies found by the gateway's anomaly schedule, each counted once, by metric.",
        ("metric",),
        registry=registry,
    )
    for metric in ("spend", "tokens"):
        anomalies.labels(metric)
    forecast = Gauge(
        "meterway_forecast_month_end",
        'Expected spend at the end of this month in the reporting currency: tenant="__all__" for everything, '
        "else one of the top tenants.",
        ("tenant", "currency"),
        registry=registry,
        multiprocess_mode="mostrecent",
    )
    return InsightMetrics(anomalies, forecast)
