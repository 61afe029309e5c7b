"""What a provider reported, normalized: usage rows, cost rows, and the snapshot that holds them.

Token fields follow SPEC.md's normalization, so they compare directly with `llm_usage_events`:
`input_tokens` counts every input token (cache reads and writes included), `cached_input_tokens`
and `cache_write_tokens` are parts of it. Money is Decimal in currency units (Anthropic's cents
are already divided by 100). `reported` names the METRICS a provider reports at all (Anthropic: no request counts;
OpenAI: no cache writes); the others are not compared.
A `ProviderData` turns into a JSON document and back without loss (Decimals as strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

SNAPSHOT_FORMAT = 1
DIMENSIONS = ("project", "api_key")  # what a row may be scoped by besides the model
METRICS = ("requests", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "cost")


@dataclass(frozen=True, slots=True)
class UsageRow:
    start: datetime  # bucket start, UTC
    endpoint: str  # which usage report: completions, embeddings, messages, ...
    model: str | None
    project: str | None  # OpenAI project_id, Anthropic workspace_id
    api_key: str | None
    requests: int | None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CostRow:
    start: datetime  # bucket start (costs are reported per day), UTC
    amount: Decimal  # in currency units
    currency: str  # upper-case ISO 4217
    model: str | None  # None: a line item not tied to a model (tools, storage, ...)
    project: str | None = None
    api_key: str | None = None
    line_item: str | None = None


@dataclass(slots=True)
class ProviderData:
    """One fetch from a provider's reporting API: the snapshot a report is computed from."""

    provider: str
    since: datetime
    until: datetime
    bucket_width: str
    fetched_at: datetime
    currency: str
    reported: tuple[str, ...]  # which of METRICS the provider reports
    cost_dimensions: tuple[str, ...]  # which of DIMENSIONS the cost rows carry
    usage: list[UsageRow] = field(default_factory=list)
    costs: list[CostRow] = field(default_factory=list)

    def within(self, since: datetime, until: datetime) -> ProviderData:
        """The rows whose bucket starts in [since, until)."""
        return ProviderData(
            self.provider, since, until, self.bucket_width, self.fetched_at, self.currency, self.reported,
            self.cost_dimensions, [u for u in self.usage if since <= u.start < until],
            [c for c in self.costs if since <= c.start < until],
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "provider": self.provider,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "bucket_width": self.bucket_width,
            "fetched_at": _iso(self.fetched_at),
            "currency": self.currency,
            "reported": list(self.reported),
            "cost_dimensions": list(self.cost_dimensions),
            "usage": [_row_dict(u) for u in self.usage],
            "costs": [_row_dict(c) for c in self.costs],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ProviderData:
        if doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {doc.get('format')!r} is not {SNAPSHOT_FORMAT}")
        return cls(
            provider=str(doc["provider"]),
            since=parse_iso(doc["since"]),
            until=parse_iso(doc["until"]),
            bucket_width=str(doc["bucket_width"]),
            fetched_at=parse_iso(doc["fetched_at"]),
            currency=str(doc["currency"]),
            reported=tuple(doc["reported"]),
            cost_dimensions=tuple(doc["cost_dimensions"]),
            usage=[UsageRow(**_row_args(UsageRow, r)) for r in doc["usage"]],
            costs=[CostRow(**_row_args(CostRow, r)) for r in doc["costs"]],
        )


def parse_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row_dict(row: UsageRow | CostRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(row):
        value = getattr(row, f.name)
        if isinstance(value, datetime):
            value = _iso(value)
        elif isinstance(value, Decimal):
            value = format(value, "f")
        out[f.name] = value
    return out


def _row_args(kind: type[UsageRow] | type[CostRow], row: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    args = {k: v for k, v in row.items() if k in names}
    args["start"] = parse_iso(args["start"])
    if "amount" in args:
        args["amount"] = Decimal(str(args["amount"]))
    return args
