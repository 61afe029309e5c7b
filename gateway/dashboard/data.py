"""What a dashboard page shows, read from the event store through `storage.queries`.

`load(cur, view, now, currency)` runs every query of a page on one reader cursor and returns a
`PageData` of plain values; rendering never touches the database. Aggregates come from the rollups
(so a page costs the same at a thousand events or ten million); only the latency percentiles (the
last 24 hours) and the recent requests page read raw events, both bounded. `TABLES` names the same
queries for the CSV exports, so a download holds exactly what the page shows.

Periods are "to date": today so far is compared with yesterday up to the same hour, this week with
last week up to the same point, this month with last month up to the same day and hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.dashboard.params import View
from storage import queries
from storage.tabular import Table
from storage.timerange import TimeRange, add_month, ceil, floor, parse_range

if TYPE_CHECKING:
    import duckdb

TOKEN_HOURS = 48
LATENCY_HOURS = 24
PAGE_ROWS = 50
CSV_ROWS = 1000
CHOICES = 200


@dataclass(frozen=True, slots=True)
class Line:
    """One row of a breakdown: a tenant, feature, model, provider, day or hour."""

    key: Any
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    costs: tuple[tuple[str, Decimal], ...] = ()  # per price currency
    cost: Decimal = Decimal(0)  # in the reporting currency
    unpriced: int = 0  # requests with tokens but no price: in no cost above, never shown as a cost of zero


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    against: str
    current: Line
    previous: Line
    rng: TimeRange
    prev_rng: TimeRange


@dataclass(slots=True)
class PageData:
    now: datetime
    currency: str  # the reporting currency
    periods: list[Period]
    span: TimeRange
    daily: list[Line]
    tenants: list[Line]
    features: list[Line]
    models: list[Line]
    providers: list[Line]
    hours: TimeRange
    tokens: list[Line]
    latency_range: TimeRange
    latency: Table
    events_range: TimeRange
    events: Table
    next_cursor: str | None
    tenant_choices: list[str]
    model_choices: list[str]


def lines(table: Table, currency: str) -> list[Line]:
    """Rows of a `costs_by` table, merged per key (a key priced under several reporting currencies is one line)."""
    return [_line(key, agg) for key, agg in queries.merged_by_key(table, currency).items()]


def _line(key: Any, agg: dict[str, Any]) -> Line:
    return Line(key, agg["requests"], agg["errors"], agg["input_tokens"], agg["output_tokens"], agg["total_tokens"],
                tuple(sorted(agg["costs"].items())), agg["cost"], agg["unpriced"])  # fmt: skip


def _filled(found: list[Line], keys: list[Any]) -> list[Line]:
    by_key = {line.key: line for line in found}
    return [by_key.get(k, Line(k)) for k in keys]


def page_filters(view: View) -> queries.Filters:
    return queries.Filters(tenant=view.page_tenant)


def span_range(view: View, now: datetime) -> TimeRange:
    return TimeRange(floor(now, "day") - timedelta(days=view.days - 1), ceil(now, "hour"))


def token_range(now: datetime) -> TimeRange:
    end = ceil(now, "hour")
    return TimeRange(end - timedelta(hours=TOKEN_HOURS), end)


def latency_range(now: datetime) -> TimeRange:
    return TimeRange(now - timedelta(hours=LATENCY_HOURS), now)


def events_query(view: View, now: datetime, limit: int = PAGE_ROWS) -> queries.EventQuery:
    rng = parse_range(view.since, None, now, exact=True)
    return queries.EventQuery(rng, queries.Filters(tenant=view.tenant, model=view.model), view.status, limit,
                              view.cursor)  # fmt: skip


Query = Callable[["duckdb.DuckDBPyConnection", View, datetime, str], Table]


def _by(by: str) -> Query:
    return lambda cur, view, now, currency: queries.costs_by(cur, by, span_range(view, now), page_filters(view))


TABLES: dict[str, Query] = {
    "daily": _by("day"),
    "tenants": _by("tenant"),
    "features": _by("feature"),
    "models": _by("model"),
    "providers": _by("provider"),
    "tokens": lambda cur, view, now, currency: queries.token_trend(cur, token_range(now), page_filters(view), currency),
    "latency": lambda cur, view, now, currency: queries.latency(cur, latency_range(now), page_filters(view)),
    "requests": lambda cur, view, now, currency: queries.events(cur, events_query(view, now, CSV_ROWS))[0],
}


def periods(cur: duckdb.DuckDBPyConnection, filters: queries.Filters, now: datetime, currency: str) -> list[Period]:
    end = ceil(now, "hour")
    day = floor(now, "day")
    week = day - timedelta(days=day.weekday())
    month = floor(now, "month")
    last_month = floor(month - timedelta(days=1), "month")
    specs = [
        ("Today", "yesterday to this hour", TimeRange(day, end), TimeRange(day - timedelta(days=1),
                                                                          end - timedelta(days=1))),
        ("This week", "last week to this point", TimeRange(week, end), TimeRange(week - timedelta(days=7),
                                                                                 end - timedelta(days=7))),
        ("This month", "last month to this point", TimeRange(month, end),
         TimeRange(last_month, min(last_month + (end - month), add_month(last_month)))),
    ]  # fmt: skip
    out = []
    for name, against, rng, prev in specs:
        now_totals = queries.totals(cur, rng, filters, currency)
        prev_totals = queries.totals(cur, prev, filters, currency)
        out.append(Period(name, against, _line(name, _totals(now_totals)), _line(name, _totals(prev_totals)), rng,
                          prev))  # fmt: skip
    return out


def _totals(t: dict[str, Any]) -> dict[str, Any]:
    return t | {"cost": t["cost_reporting"]}


def load(cur: duckdb.DuckDBPyConnection, view: View, now: datetime, currency: str) -> PageData:
    filters = page_filters(view)
    span = span_range(view, now)
    days = [span.since.date() + timedelta(days=i) for i in range(view.days)] if span.since else []
    daily = _filled(lines(TABLES["daily"](cur, view, now, currency), currency), days)
    hours = token_range(now)
    trend = queries.token_trend(cur, hours, filters, currency)
    token_lines = [Line(r[0], r[1], 0, r[2], r[5], r[7], (), r[8]) for r in trend.rows]
    assert hours.since is not None
    hour_keys = [hours.since + timedelta(hours=h) for h in range(TOKEN_HOURS)]
    tenants = [] if view.page_tenant else lines(TABLES["tenants"](cur, view, now, currency), currency)
    models = lines(TABLES["models"](cur, view, now, currency), currency)
    events, cursor = queries.events(cur, events_query(view, now))
    choices = tenants if tenants else lines(queries.costs_by(cur, "tenant", span, queries.Filters()), currency)
    return PageData(
        now=now, currency=currency, periods=periods(cur, filters, now, currency), span=span, daily=daily,
        tenants=tenants[:10], features=lines(TABLES["features"](cur, view, now, currency), currency), models=models,
        providers=lines(TABLES["providers"](cur, view, now, currency), currency), hours=hours,
        tokens=_filled(token_lines, hour_keys), latency_range=latency_range(now),
        latency=TABLES["latency"](cur, view, now, currency), events_range=events_query(view, now).rng, events=events,
        next_cursor=cursor, tenant_choices=_keys(choices), model_choices=_keys(models),
    )  # fmt: skip


def _keys(found: list[Line]) -> list[str]:
    return sorted(str(line.key) for line in found if line.key is not None)[:CHOICES]


def day_label(key: date) -> str:
    return key.strftime("%b %d")
