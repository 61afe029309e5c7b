"""The gateway's side of a reconciliation: what `llm_usage_events` holds per period, provider and model.

One aggregate query over raw events (the rollups have no `usage_source` or stream-failure counts,
which are exactly the causes a reconciliation must show). `query` is any `query(sql, params) ->
rows` callable, such as `DuckDBSink.query`, or a DuckDB connection. Periods are UTC days or hours.

`requests` counts the events the provider billed something for (`usage_source` is `provider` or
`estimated`); refused, unroutable and failed-before-billing requests are in `events` only.
Cost is `total_cost` of events priced in the provider's currency, plus `cost_reporting` of
events priced in another currency whose reporting currency is the provider's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from reconcile.errors import ReconcileError
from storage.errors import duckdb_error

if TYPE_CHECKING:
    import duckdb

Query = Callable[[str, list[Any]], list[tuple[Any, ...]]]
TABLE = "llm_usage_events"
_TRUNC = {"1d": "day", "1h": "hour"}
_COUNTS = (
    "events",
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "total_tokens",
    "estimated_requests",
    "estimated_tokens",
    "unpriced_requests",
    "failed_after_streaming",
    "other_currency_requests",
)  # the query's columns after period, provider and model, in order; then the cost


@dataclass(frozen=True, slots=True)
class GatewayRow:
    start: datetime
    provider: str  # the configured provider name
    model: str | None
    events: int = 0
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    estimated_requests: int = 0
    estimated_tokens: int = 0
    unpriced_requests: int = 0
    failed_after_streaming: int = 0
    other_currency_requests: int = 0
    cost: Decimal = Decimal(0)


def as_query(source: Query | duckdb.DuckDBPyConnection) -> Query:
    if not callable(source):  # a DuckDB connection
        con = source

        def run(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
            return con.execute(sql, params).fetchall()

        return run
    return source


def gateway_rows(
    query: Query | duckdb.DuckDBPyConnection,
    providers: Sequence[str],
    since: datetime,
    until: datetime,
    bucket_width: str,
    currency: str,
) -> list[GatewayRow]:
    """Aggregates of the events of `providers` in [since, until), per period, provider and model."""
    if not providers:
        return []
    marks = ", ".join("?" for _ in providers)
    sql = f"""
        SELECT date_trunc('{_TRUNC[bucket_width]}', ts AT TIME ZONE 'UTC') AS period, provider,
            coalesce(model, model_requested) AS model_name,
            count(*),
            count(*) FILTER (WHERE usage_source IN ('provider', 'estimated')),
            coalesce(sum(input_tokens), 0), coalesce(sum(cached_input_tokens), 0),
            coalesce(sum(cache_write_tokens), 0), coalesce(sum(output_tokens), 0),
            coalesce(sum(total_tokens), 0),
            count(*) FILTER (WHERE usage_source = 'estimated'),
            coalesce(sum(total_tokens) FILTER (WHERE usage_source = 'estimated'), 0),
            count(*) FILTER (WHERE pricing_status = 'unpriced' AND usage_source IN ('provider', 'estimated')),
            count(*) FILTER (WHERE stream AND error_type IS NOT NULL AND status_code < 400),
            count(*) FILTER (WHERE pricing_status = 'priced' AND currency IS DISTINCT FROM ?
                             AND reporting_currency IS DISTINCT FROM ?),
            coalesce(sum(total_cost) FILTER (WHERE pricing_status <> 'unpriced' AND currency = ?), 0)
              + coalesce(sum(cost_reporting) FILTER (WHERE pricing_status <> 'unpriced'
                         AND currency IS DISTINCT FROM ? AND reporting_currency = ?), 0)
        FROM {TABLE}
        WHERE ts >= ? AND ts < ? AND provider IN ({marks})
        GROUP BY ALL ORDER BY ALL
    """
    params: list[Any] = [currency] * 5 + [since, until, *providers]
    try:
        rows = as_query(query)(sql, params)
    except Exception as exc:
        if not duckdb_error(exc):
            raise
        raise ReconcileError(f"cannot read {TABLE}: {exc}") from None
    out = []
    for row in rows:
        period, provider, model, *numbers = row
        counts = dict(zip(_COUNTS, (int(n) for n in numbers[:-1]), strict=True))
        out.append(GatewayRow(_utc(period), str(provider), model, cost=Decimal(numbers[-1]), **counts))
    return out


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise ReconcileError(f"unexpected period value {value!r} from {TABLE}")
