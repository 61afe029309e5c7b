"""From a `UsageEvent` to metric updates: `MetricsRecorder.record(event)`, once per request.

It runs on the request path, so the label work is done once per distinct label tuple: the event's
open-ended values are folded (metrics.labels), the folded tuple looks up a `_Series` holding the
labelled children of every metric, and recording adds the event's numbers to that series' pending
sums (a histogram observation is one `bisect` into its bucket counts). `flush()` moves the pending
sums into the prometheus-client children in one `inc` per changed value; the exporter calls it on
the event loop before every scrape and once a second, so a scrape sees every event its own process
recorded before it; in multiprocess mode the other workers' counts are at most a second old. The token children
and the unpriced/estimated counters of a series start at zero, so every series a dashboard reads
exists from the first request of its kind. Nothing here does I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal
from pathlib import Path

from prometheus_client import Counter, Histogram

from metrics.config import LabelPolicy, MetricsConfig
from metrics.definitions import ATTRIBUTION_LABELS, TOKEN_TYPES, MeterwayMetrics
from metrics.labels import MISSING, BoundedLabel, LabelFolder, SharedAdmissions
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

# Answers that say the model or path asked for does not exist (a mistyped model, a probed path)
UNKNOWN_NAME = frozenset({404, 405})

# provider, model, endpoint, status class, stream, tenant, feature, user, requested model
SeriesKey = tuple[str, str, str, str, bool, str, str, str, str]


class MetricsRecorder:
    def __init__(
        self, metrics: MeterwayMetrics, config: MetricsConfig, currency: str, shared: Path | None = None
    ) -> None:
        """`shared`: the multiprocess directory, where the workers agree on the label values they admit."""
        self.metrics = metrics
        self.currency = currency
        off = LabelPolicy("none", 0)

        def folder(label: str, policy: LabelPolicy) -> LabelFolder:
            return LabelFolder(policy, SharedAdmissions(shared, label) if shared is not None else None)

        self.tenant = folder("tenant", config.tenant if "tenant" in metrics.attribution else off)
        self.feature = folder("feature", config.feature if "feature" in metrics.attribution else off)
        self.user = folder("user", config.user if "user" in metrics.attribution else off)
        self.model = folder("model", config.model)
        self.endpoint = folder("endpoint", config.endpoint)
        self.error_types = BoundedLabel(50)
        self._genai = metrics.genai_tokens is not None
        self._series: dict[SeriesKey, _Series] = {}
        self._dirty: list[_Series] = []

    def record(self, event: UsageEvent) -> None:
        status = event.status_code // 100
        served = event.status_code not in UNKNOWN_NAME  # a name no one has takes no model or endpoint slot
        key: SeriesKey = (
            event.provider or MISSING,
            self.model.fold(event.model, served),
            self.endpoint.fold(event.endpoint, served),
            _STATUS_CLASSES[status] if 0 <= status <= 5 else "none",
            event.stream,
            self.tenant.fold(event.tenant_id),
            self.feature.fold(event.feature),
            self.user.fold(event.user_id),
            self.model.fold(event.model_requested, served) if self._genai else "",
        )
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, key)
        if not series.requests:
            self._dirty.append(series)
        series.record(event)

    def flush(self) -> None:
        """Publish every pending count to the metric children (call from the recording thread)."""
        dirty, self._dirty = self._dirty, []
        for series in dirty:
            series.flush()

    @property
    def series_count(self) -> int:
        """Distinct label tuples seen (bounded by the label policies)."""
        return len(self._series)


class _Buckets:
    """A histogram child's observations not yet published: bucket counts and a sum."""

    __slots__ = ("bounds", "child", "counts", "n", "total")

    def __init__(self, child: Histogram) -> None:
        # A labelled Histogram keeps its bounds, bucket values and sum in `_upper_bounds`, `_buckets` and
        # `_sum` (prometheus-client is pinned in pyproject.toml). Publishing adds to those values, once
        # per bucket, instead of calling `observe()` per observation; tests/metrics checks both agree.
        self.child = child
        self.bounds: list[float] = child._upper_bounds
        self.counts = [0] * len(self.bounds)
        self.n = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket with value <= le
        self.n += 1
        self.total += value

    def flush(self) -> None:
        if not self.n:
            return
        self.n = 0
        buckets = self.child._buckets
        for i, n in enumerate(self.counts):
            if n:
                buckets[i].inc(n)
                self.counts[i] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0


class _Series:
    """The labelled children of every metric for one folded label tuple, and what is pending for them."""

    __slots__ = (
        "_errors", "_key", "_recorder", "c_cost", "c_duration", "c_estimated", "c_requests", "c_tokens",
        "c_ttft", "c_unpriced", "cost", "duration", "error_counts", "estimated", "genai", "requests", "tokens",
        "ttft", "unpriced",
    )  # fmt: skip

    def __init__(self, recorder: MetricsRecorder, key: SeriesKey) -> None:
        m = recorder.metrics
        provider, model, endpoint, status_class, stream = key[:5]
        attr = tuple(v for name, v in zip(ATTRIBUTION_LABELS, key[5:8], strict=True) if name in m.attribution)
        self._recorder, self._key = recorder, key
        self.c_requests = m.requests.labels(provider, model, endpoint, status_class, *attr)
        self.c_cost = m.cost.labels(provider, model, recorder.currency, *attr)
        self.c_tokens = tuple(m.tokens.labels(provider, model, t, *attr) for t in TOKEN_TYPES) if m.tokens else ()
        self.c_duration = m.duration.labels(provider, model, "true" if stream else "false") if m.duration else None
        self.c_ttft = m.ttft.labels(provider, model)
        self.c_unpriced = m.unpriced.labels(provider, model)
        self.c_estimated = m.estimated.labels(provider, model)
        self._errors: dict[str, Counter] = {}
        # pending since the last flush
        self.requests = 0
        self.tokens = [0] * len(TOKEN_TYPES)
        self.cost = 0.0
        self.estimated = self.unpriced = 0
        self.error_counts: dict[str, int] = {}
        self.duration = _Buckets(self.c_duration) if self.c_duration is not None else None
        self.ttft = _Buckets(self.c_ttft)
        self.genai = _GenAI(recorder, key) if m.genai_tokens is not None else None

    def record(self, event: UsageEvent) -> None:
        self.requests += 1
        tokens = self.tokens
        tokens[0] += event.input_tokens
        tokens[1] += event.cached_input_tokens
        tokens[2] += event.cache_write_tokens
        tokens[3] += event.output_tokens
        tokens[4] += event.reasoning_tokens
        cost = event.cost_reporting
        if cost is not None and cost > _ZERO:
            self.cost += float(cost)
        if event.usage_source == "estimated":
            self.estimated += 1
        if event.pricing_status == "unpriced" and event.usage_source != "none":
            self.unpriced += 1
        if event.error_type is not None:
            self.error_counts[event.error_type] = self.error_counts.get(event.error_type, 0) + 1
        seconds = event.duration_ms / 1000
        if self.duration is not None:
            self.duration.observe(seconds)
        if event.ttft_ms is not None:
            self.ttft.observe(event.ttft_ms / 1000)
        if self.genai is not None:
            self.genai.record(event, seconds)

    def flush(self) -> None:
        self.c_requests.inc(self.requests)
        self.requests = 0
        for child, n in zip(self.c_tokens, self.tokens, strict=False):  # no token counter with `naming: opentelemetry`
            if n > 0:
                child.inc(n)
        self.tokens = [0] * len(TOKEN_TYPES)
        if self.cost:
            self.c_cost.inc(self.cost)
            self.cost = 0.0
        if self.estimated:
            self.c_estimated.inc(self.estimated)
            self.estimated = 0
        if self.unpriced:
            self.c_unpriced.inc(self.unpriced)
            self.unpriced = 0
        for error_type, n in self.error_counts.items():
            self._error(error_type).inc(n)
        self.error_counts.clear()
        if self.duration is not None:
            self.duration.flush()
        self.ttft.flush()
        if self.genai is not None:
            self.genai.flush()

    def _error(self, error_type: str) -> Counter:
        child = self._errors.get(error_type)
        if child is None:
            label = self._recorder.error_types.fold(error_type)
            child = self._errors[error_type] = self._recorder.metrics.errors.labels(self._key[0], self._key[1], label)
        return child


class _GenAI:
    """The OpenTelemetry GenAI children of one series, with their pending observations."""

    __slots__ = ("_durations", "_labels", "_recorder", "input", "output")

    def __init__(self, recorder: MetricsRecorder, key: SeriesKey) -> None:
        tokens = recorder.metrics.genai_tokens
        assert tokens is not None
        provider, model, endpoint = key[0], key[1], key[2]
        self._labels = (_GENAI_OPERATIONS.get(endpoint, endpoint), provider, key[8], model)
        self._recorder = recorder
        self.input = _Buckets(tokens.labels(*self._labels, "input"))
        self.output = _Buckets(tokens.labels(*self._labels, "output"))
        self._durations: dict[str | None, _Buckets] = {}

    def record(self, event: UsageEvent, seconds: float) -> None:
        if event.usage_source != "none":
            self.input.observe(event.input_tokens)
            self.output.observe(event.output_tokens)
        pending = self._durations.get(event.error_type)
        if pending is None:
            pending = self._durations[event.error_type] = _Buckets(self._duration_child(event.error_type))
        pending.observe(seconds)

    def flush(self) -> None:
        self.input.flush()
        self.output.flush()
        for pending in self._durations.values():
            pending.flush()

    def _duration_child(self, error_type: str | None) -> Histogram:
        durations = self._recorder.metrics.genai_duration
        assert durations is not None
        label = self._recorder.error_types.fold(error_type) if error_type else ""
        return durations.labels(*self._labels, label)
