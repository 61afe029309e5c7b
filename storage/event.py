"""The one event schema: a row of `llm_usage_events`, one per request that reached routing.

`UsageEvent` is what the gateway fills in; `COLUMNS` is the table's schema, used for the DDL and
for reading journal lines back. Money stays Decimal and is written to the journal as strings, so
no float ever touches a cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from pricing.calculator import Priced

COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "VARCHAR NOT NULL"),  # the key: stored once per request (see storage.duckdb_sink)
    ("ts", "TIMESTAMPTZ"),
    ("duration_ms", "DOUBLE"),
    ("ttft_ms", "DOUBLE"),
    ("tenant_id", "VARCHAR"),
    ("user_id", "VARCHAR"),
    ("feature", "VARCHAR"),
    ("session_id", "VARCHAR"),
    ("api_key_id", "VARCHAR"),
    ("tags", "JSON"),
    ("provider", "VARCHAR"),
    ("endpoint", "VARCHAR"),
    ("model_requested", "VARCHAR"),
    ("model", "VARCHAR"),
    ("stream", "BOOLEAN"),
    ("status_code", "INTEGER"),
    ("error_type", "VARCHAR"),
    ("error_message", "VARCHAR"),
    ("input_tokens", "BIGINT"),
    ("cached_input_tokens", "BIGINT"),
    ("cache_write_tokens", "BIGINT"),
    ("output_tokens", "BIGINT"),
    ("reasoning_tokens", "BIGINT"),
    ("total_tokens", "BIGINT"),
    ("usage_source", "VARCHAR"),
    ("currency", "VARCHAR"),
    ("input_cost", "DECIMAL(38,12)"),
    ("cached_input_cost", "DECIMAL(38,12)"),
    ("cache_write_cost", "DECIMAL(38,12)"),
    ("output_cost", "DECIMAL(38,12)"),
    ("total_cost", "DECIMAL(38,12)"),
    ("cost_reporting", "DECIMAL(38,12)"),
    ("reporting_currency", "VARCHAR"),
    ("price_id", "VARCHAR"),
    ("pricing_status", "VARCHAR"),
    ("thinking", "BOOLEAN"),  # the request ran in thinking mode, as priced (NULL on events stored before v4)
    ("service_tier", "VARCHAR"),  # the service tier the provider reported applying (OpenAI flex, priority), as priced
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
_TEXT = tuple(name for name, kind in COLUMNS if kind.startswith("VARCHAR"))
MAX_LINE = 64 * 1024  # bytes: a journal line longer than this is written with its free text clipped
CLIP_TEXT = 1024  # characters kept of a clipped line's text fields
CLIP_TAGS = 32  # tags kept of a clipped line
MONEY = ("input_cost", "cached_input_cost", "cache_write_cost", "output_cost", "total_cost", "cost_reporting")


@dataclass(slots=True)
class UsageEvent:
    request_id: str
    ts: datetime
    provider: str | None = None
    endpoint: str | None = None
    model_requested: str | None = None
    model: str | None = None
    stream: bool = False
    status_code: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    api_key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    usage_source: str = "none"
    currency: str | None = None
    input_cost: Decimal | None = None
    cached_input_cost: Decimal | None = None
    cache_write_cost: Decimal | None = None
    output_cost: Decimal | None = None
    total_cost: Decimal | None = None
    cost_reporting: Decimal | None = None
    reporting_currency: str | None = None
    price_id: str | None = None
    pricing_status: str = "unpriced"
    thinking: bool = False
    service_tier: str | None = None

    def set_price(self, priced: Priced) -> None:
        """Take the costs, currency, price id and status of a pricing result."""
        self.currency = priced.currency
        self.input_cost = priced.input_cost
        self.cached_input_cost = priced.cached_input_cost
        self.cache_write_cost = priced.cache_write_cost
        self.output_cost = priced.output_cost
        self.total_cost = priced.total_cost
        self.cost_reporting = priced.cost_reporting
        self.price_id = priced.price_id
        self.pricing_status = priced.pricing_status

    def to_json(self) -> bytes:
        """One journal line (no newline). Decimals become exact strings (`str`, which may use an
        exponent such as `1.8E-7`; DuckDB and `Decimal()` read both forms); `tags` stays an object.
        A line is at most about MAX_LINE bytes: past that, text fields and tags are clipped (the
        loader reads lines of up to 1 MiB), so no event is ever too long to store."""
        line = orjson.dumps(self, default=str)
        return line if len(line) <= MAX_LINE else orjson.dumps(self.clipped(), default=str)

    def clipped(self) -> UsageEvent:
        """A copy with every text field cut to CLIP_TEXT characters and at most CLIP_TAGS tags."""
        clipped = replace(self, tags={k[:CLIP_TEXT]: v[:CLIP_TEXT] for k, v in list(self.tags.items())[:CLIP_TAGS]})
        for name in _TEXT:
            if isinstance(value := getattr(self, name), str):
                setattr(clipped, name, value[:CLIP_TEXT])
        return clipped

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> UsageEvent:
        data = {k: row[k] for k in COLUMN_NAMES if k in row}
        for key in MONEY:
            if data.get(key) is not None:
                data[key] = Decimal(str(data[key]))
        if isinstance(data.get("ts"), str):
            data["ts"] = datetime.fromisoformat(data["ts"])
        if isinstance(data.get("tags"), str):
            data["tags"] = orjson.loads(data["tags"])
        return cls(**data)
