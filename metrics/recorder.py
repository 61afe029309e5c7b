"""From a `UsageEvent` to metric updates: `MetricsRecorder.record(event)`, once per request.

It runs on the request path, so the label work is done once per distinct label tuple: the event's
open-ended values are folded (metrics.labels), the folded tuple looks up a `_Series` holding the
labelled children of every metric, and recording is then a handful of `inc`/`observe` calls. The
token children and the unpriced/estimated counters of a series start at zero, so every series a
dashboard reads exists from the first request of its kind. Nothing here does I/O.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Histogram

from metrics.config import LabelPolicy, MetricsConfig
from metrics.definitions import ATTRIBUTION_LABELS, TOKEN_TYPES, MeterwayMetrics
from metrics.labels import MISSING, BoundedLabel, LabelFolder
from storage.event import UsageEvent

_STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
_ZERO = Decimal(0)
# The OpenTelemetry `gen_ai.operation.name` of each endpoint; other endpoints keep their own name.
_GENAI_OPERATIONS = {
    "chat.completions": "chat",
    "responses": "chat",
    "anthropic.messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "gemini.generateContent": "generate_content",
    "gemini.streamGenerateContent": "generate_content",
}

# provider, model, endpoint, status class, stream, tenant, feature, user, requested model
SeriesKey = tuple[str, str, str, str, bool, str, str, str, str]


class MetricsRecorder:
    def __init__(self, metrics: MeterwayMetrics, config: MetricsConfig, currency: str) -> None:
        self.metrics = metrics
        self.currency = currency
        off = LabelPolicy("none", 0)
        self.tenant = LabelFolder(config.tenant if "tenant" in metrics.attribution else off)
        self.feature = LabelFolder(config.feature if "feature" in metrics.attribution else off)
        self.user = LabelFolder(config.user if "user" in metrics.attribution else off)
        self.model = LabelFolder(config.model)
        self.endpoint = LabelFolder(config.endpoint)
        self.error_types = BoundedLabel(50)
        self._genai = metrics.genai_tokens is not None
        self._series: dict[SeriesKey, _Series] = {}

    def record(self, event: UsageEvent) -> None:
        status = event.status_code // 100
        key: SeriesKey = (
            event.provider or MISSING,
            self.model.fold(event.model),
            self.endpoint.fold(event.endpoint),
            _STATUS_CLASSES[status] if 0 <= status <= 5 else "none",
            event.stream,
            self.tenant.fold(event.tenant_id),
            self.feature.fold(event.feature),
            self.user.fold(event.user_id),
            self.model.fold(event.model_requested) if self._genai else "",
        )
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, key)
        series.record(event)

    @property
    def series_count(self) -> int:
        """Distinct label tuples seen (bounded by the label policies)."""
        return len(self._series)


class _Series:
    """The labelled children of every metric for one folded label tuple."""

    __slots__ = (
        "_errors", "_key", "_recorder", "cost", "duration", "estimated",
        "genai", "requests", "tokens", "ttft", "unpriced",
    )  # fmt: skip

    def __init__(self, recorder: MetricsRecorder, key: SeriesKey) -> None:
        m = recorder.metrics
        provider, model, endpoint, status_class, stream = key[:5]
        attr = tuple(v for name, v in zip(ATTRIBUTION_LABELS, key[5:8], strict=True) if name in m.attribution)
        self._recorder, self._key = recorder, key
        self.requests = m.requests.labels(provider, model, endpoint, status_class, *attr)
        self.cost = m.cost.labels(provider, model, recorder.currency, *attr)
        self.tokens = tuple(m.tokens.labels(provider, model, t, *attr) for t in TOKEN_TYPES) if m.tokens else ()
        self.duration = m.duration.labels(provider, model, "true" if stream else "false") if m.duration else None
        self.ttft = m.ttft.labels(provider, model)
        self.unpriced = m.unpriced.labels(provider, model)
        self.estimated = m.estimated.labels(provider, model)
        self.genai = _GenAI(recorder, key) if m.genai_tokens is not None else None
        self._errors: dict[str, Counter] = {}

    def record(self, event: UsageEvent) -> None:
        self.requests.inc()
        if self.tokens:
            _count_tokens(self.tokens, event)
        cost = event.cost_reporting
        if cost is not None and cost > _ZERO:
            self.cost.inc(float(cost))
        if event.usage_source == "estimated":
            self.estimated.inc()
        if event.pricing_status == "unpriced" and event.usage_source != "none":
            self.unpriced.inc()
        if event.error_type is not None:
            self._error(event.error_type).inc()
        seconds = event.duration_ms / 1000
        if self.duration is not None:
            self.duration.observe(seconds)
        if event.ttft_ms is not None:
            self.ttft.observe(event.ttft_ms / 1000)
        if self.genai is not None:
            self.genai.record(event, seconds)

    def _error(self, error_type: str) -> Counter:
        child = self._errors.get(error_type)
        if child is None:
            label = self._recorder.error_types.fold(error_type)
            child = self._errors[error_type] = self._recorder.metrics.errors.labels(self._key[0], self._key[1], label)
        return child


class _GenAI:
    """The OpenTelemetry GenAI children of one series."""

    __slots__ = ("_durations", "_labels", "_recorder", "input", "output")

    def __init__(self, recorder: MetricsRecorder, key: SeriesKey) -> None:
        tokens = recorder.metrics.genai_tokens
        assert tokens is not None
        provider, model, endpoint = key[0], key[1], key[2]
        self._labels = (_GENAI_OPERATIONS.get(endpoint, endpoint), provider, key[8], model)
        self._recorder = recorder
        self.input = tokens.labels(*self._labels, "input")
        self.output = tokens.labels(*self._labels, "output")
        self._durations: dict[str | None, Histogram] = {}

    def record(self, event: UsageEvent, seconds: float) -> None:
        if event.usage_source != "none":
            self.input.observe(event.input_tokens)
            self.output.observe(event.output_tokens)
        child = self._durations.get(event.error_type)
        if child is None:
            child = self._durations[event.error_type] = self._duration_child(event.error_type)
        child.observe(seconds)

    def _duration_child(self, error_type: str | None) -> Histogram:
        durations = self._recorder.metrics.genai_duration
        assert durations is not None
        label = self._recorder.error_types.fold(error_type) if error_type else ""
        return durations.labels(*self._labels, label)


def _count_tokens(children: tuple[Counter, ...], event: UsageEvent) -> None:
    if event.input_tokens > 0:
        children[0].inc(event.input_tokens)
    if event.cached_input_tokens > 0:
        children[1].inc(event.cached_input_tokens)
    if event.cache_write_tokens > 0:
        children[2].inc(event.cache_write_tokens)
    if event.output_tokens > 0:
        children[3].inc(event.output_tokens)
    if event.reasoning_tokens > 0:
        children[4].inc(event.reasoning_tokens)
