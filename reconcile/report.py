"""A reconciliation report: lines with both sides, their differences, a verdict and likely causes.

A `Line` is one period x model (x project or API key) with the provider's figures, the gateway's,
the difference of each figure (`gateway - provider`, and that over the provider's figure), the
verdict, and cause codes (see CAUSES). `Report.to_dict()` is the JSON shape (`/admin/reconcile`,
`--format json`); `Report.table()` the flat one (CSV, terminal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from reconcile.model import METRICS

Number = int | Decimal
MATCH, UNDER, OVER = "match", "gateway_under", "gateway_over"
CAUSES = {
    "estimated_usage": "some gateway usage was estimated (the stream carried no usage)",
    "unpriced_requests": "some gateway requests matched no price (cost unknown, not zero)",
    "failed_after_streaming": "some streams failed after they started (billed, partly seen)",
    "other_currency": "some gateway requests were priced in another currency",
    "model_not_seen_by_gateway": "the gateway never saw this model: traffic that bypassed it",
    "provider_only_day": "the gateway recorded no traffic for this provider in this period",
    "not_reported_by_provider": "the provider reports nothing here (reports lag, or it names the model differently)",
    "cost_not_per_model": "a cost the provider does not tie to a model (tools, storage, ...)",
    "scope_not_via_gateway": "no gateway provider is mapped to this project or key: traffic that bypassed it",
    "gateway_scope_unmapped": "the gateway provider has no project or key mapped (reconcile.*.gateway_providers)",
}


@dataclass(slots=True)
class Side:
    """One side's figures; None where that side does not report the figure."""

    requests: int | None = 0
    input_tokens: int | None = 0
    cached_input_tokens: int | None = 0
    cache_write_tokens: int | None = 0
    output_tokens: int | None = 0
    cost: Decimal | None = Decimal(0)

    def get(self, metric: str) -> Number | None:
        value: Number | None = getattr(self, metric)
        return value

    def add(self, metric: str, value: Number | None) -> None:
        current = self.get(metric)
        if current is not None and value is not None:
            setattr(self, metric, current + value)


@dataclass(slots=True)
class GatewayNotes:
    """What the gateway can see that explains a difference."""

    events: int = 0
    total_tokens: int = 0
    estimated_requests: int = 0
    estimated_tokens: int = 0
    unpriced_requests: int = 0
    failed_after_streaming: int = 0
    other_currency_requests: int = 0

    @property
    def estimated_share(self) -> Decimal | None:
        """The estimated part of the gateway's tokens."""
        if not self.total_tokens:
            return None
        return (Decimal(self.estimated_tokens) / self.total_tokens).quantize(Decimal("0.000001"))

    def merge(self, other: GatewayNotes) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Difference:
    absolute: Number | None  # gateway - provider; None when one side does not report it
    relative: Decimal | None  # absolute / provider; None when not comparable or the provider says 0


@dataclass(slots=True)
class Line:
    start: datetime | None  # None on the totals line
    model: str | None
    scope: str | None  # project / workspace or API key, at those levels
    provider: Side
    gateway: Side
    notes: GatewayNotes
    differences: dict[str, Difference] = field(default_factory=dict)
    verdict: str = MATCH
    causes: list[str] = field(default_factory=list)

    def to_dict(self, bucket_width: str) -> dict[str, Any]:
        return {
            "period": period_text(self.start, bucket_width) if self.start else None,
            "model": self.model,
            "scope": self.scope,
            "verdict": self.verdict,
            "provider": {m: self.provider.get(m) for m in METRICS},
            "gateway": {m: self.gateway.get(m) for m in METRICS},
            "difference": {m: {"absolute": d.absolute, "relative": d.relative} for m, d in self.differences.items()},
            "gateway_notes": {
                "events": self.notes.events,
                "estimated_requests": self.notes.estimated_requests,
                "estimated_share": self.notes.estimated_share,
                "unpriced_requests": self.notes.unpriced_requests,
                "failed_after_streaming": self.notes.failed_after_streaming,
                "other_currency_requests": self.notes.other_currency_requests,
            },
            "causes": list(self.causes),
        }


@dataclass(slots=True)
class Report:
    provider: str
    currency: str
    since: datetime
    until: datetime
    bucket_width: str
    by: str
    tolerance: Decimal
    gateway_providers: list[str]
    snapshot: dict[str, Any]  # id and fetched_at of the provider data used
    offline: bool
    lines: list[Line]
    totals: Line
    relative_difference: Decimal | None  # the headline: cost, else input + output tokens
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "currency": self.currency,
            "since": self.since,
            "until": self.until,
            "bucket_width": self.bucket_width,
            "by": self.by,
            "tolerance": self.tolerance,
            "gateway_providers": self.gateway_providers,
            "snapshot": self.snapshot,
            "offline": self.offline,
            "relative_difference": self.relative_difference,
            "verdict": self.totals.verdict,
            "summary": self.summary,
            "totals": self.totals.to_dict(self.bucket_width),
            "lines": [line.to_dict(self.bucket_width) for line in self.lines],
            "causes": {code: CAUSES[code] for code in sorted({c for ln in self.lines for c in ln.causes})},
        }

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["period", "model", "scope", "verdict"]
        for metric in METRICS:
            columns += [f"provider_{metric}", f"gateway_{metric}", f"diff_{metric}", f"rel_{metric}"]
        columns += ["estimated_share", "unpriced_requests", "failed_after_streaming", "causes"]
        rows = []
        for line in [*self.lines, self.totals]:
            row: list[Any] = [
                period_text(line.start, self.bucket_width) if line.start else "total", line.model, line.scope,
                line.verdict,
            ]  # fmt: skip
            for metric in METRICS:
                diff = line.differences.get(metric, Difference(None, None))
                row += [line.provider.get(metric), line.gateway.get(metric), diff.absolute, diff.relative]
            notes = line.notes
            row += [notes.estimated_share, notes.unpriced_requests, notes.failed_after_streaming, ";".join(line.causes)]
            rows.append(row)
        return columns, rows


def period_text(start: datetime, bucket_width: str) -> str:
    return start.date().isoformat() if bucket_width == "1d" else start.strftime("%Y-%m-%dT%H:00Z")
