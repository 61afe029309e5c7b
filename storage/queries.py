"""Report queries: totals, breakdowns, series and billing from the rollups; event lookups from raw events.

Every function takes a DuckDB cursor (from `DuckDBSink.reader()`) and validated inputs, and
returns a `Table` or a JSON-ready dict. Aggregates read the rollup tables through `_source()`,
which tiles the range with monthly, daily and hourly rows (see `timerange.plan`), so their cost
does not grow with the number of events. Only the event listing and lookup touch raw events.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from storage.event import COLUMN_NAMES
from storage.rollups import TOKENS
from storage.schema import EVENTS
from storage.tabular import Table
from storage.timerange import QueryError, TimeRange, iso, parse_time, plan

if TYPE_CHECKING:
    import duckdb

BY = {"tenant": "tenant_id", "feature": "feature", "model": "model", "provider": "provider"}
GRAINS = ("hour", "day", "month")
ROLLUP = {"hour": "usage_rollup_hourly", "day": "usage_rollup_daily", "month": "usage_rollup_monthly"}
MAX_HOURS = 24 * 93
NONE_KEY = "(none)"
COUNTS = ("requests", "errors", "unpriced", *TOKENS)
_BRIEF = ["requests", "errors", "unpriced", "input_tokens", "output_tokens", "total_tokens", "costs", "cost_reporting"]


@dataclass(frozen=True, slots=True)
class Filters:
    tenant: str | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None

    def rollup_where(self) -> tuple[str, list[Any]]:
        conds, params = ["TRUE"], []
        for name, column in (("tenant", "tenant_id"), ("provider", "provider"), ("model", "model"),
                             ("feature", "feature")):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        return " AND ".join(conds), params


def _source(rng: TimeRange, finest: str) -> tuple[str, list[Any]]:
    parts, params = [], []
    for grain, lo, hi in plan(rng, finest):
        conds = ["bucket < ?"] if lo is None else ["bucket >= ?", "bucket < ?"]
        params += [hi] if lo is None else [lo, hi]
        parts.append(f"SELECT * FROM {ROLLUP[grain]} WHERE {' AND '.join(conds)}")
    return "(" + " UNION ALL ".join(parts) + ")", params


def _grouped(
    cur: duckdb.DuckDBPyConnection, key: str | None, finest: str, rng: TimeRange, filters: Filters
) -> dict[tuple[Any, str], dict[str, Any]]:
    """{(key value, reporting currency): totals with `costs` per price currency}."""
    src, params = _source(rng, finest)
    where, wparams = filters.rollup_where()
    key_sql = key or "NULL"
    sums = ", ".join(f"sum({c})::BIGINT" for c in COUNTS)
    sql = (
        f"SELECT {key_sql} AS k, reporting_currency, currency, {sums}, sum(total_cost), sum(cost_reporting) "
        f"FROM {src} r WHERE {where} GROUP BY ALL"
    )
    out: dict[tuple[Any, str], dict[str, Any]] = {}
    for row in cur.execute(sql, params + wparams).fetchall():
        k, reporting, currency = row[0], row[1], row[2]
        agg = out.setdefault((k, reporting), {c: 0 for c in COUNTS} | {"costs": {}, "cost_reporting": Decimal(0)})
        for name, value in zip(COUNTS, row[3 : 3 + len(COUNTS)], strict=True):
            agg[name] += value
        if currency:
            agg["costs"][currency] = agg["costs"].get(currency, Decimal(0)) + row[-2]
        agg["cost_reporting"] += row[-1]
    for agg in out.values():
        agg["costs"] = dict(sorted(agg["costs"].items()))
    return out


def costs_by(
    cur: duckdb.DuckDBPyConnection, by: str, rng: TimeRange, filters: Filters, limit: int | None = None
) -> Table:
    """Totals per tenant, feature, model, provider, hour, day or month, biggest cost first (time: in order)."""
    if by in GRAINS:
        if by == "hour":
            _check_hours(rng)
        key, finest = f"date_trunc('{by}', bucket)", by
    elif by in BY:
        key, finest = BY[by], "month"
    else:
        raise QueryError("by", f"expected one of {', '.join([*BY, *GRAINS])}, got {by!r}")
    groups = _grouped(cur, key, finest, rng, filters)
    columns = [by, *COUNTS, "costs", "cost_reporting", "reporting_currency"]
    rows = []
    for (k, reporting), agg in groups.items():
        value = k.date() if by in ("day", "month") and isinstance(k, datetime) else (k or None)
        rows.append([value, *(agg[c] for c in COUNTS), agg["costs"], agg["cost_reporting"], reporting or None])
    if by in GRAINS:
        rows.sort(key=lambda r: (r[0], r[-1] or ""))
    else:
        rows.sort(key=lambda r: (-r[-2], -r[1], r[0] or ""))
    return Table(columns, rows[:limit] if limit else rows, brief=brief_for(by))


def brief_for(by: str) -> list[str]:
    return [by, *_BRIEF]


def summary(
    cur: duckdb.DuckDBPyConnection, rng: TimeRange, filters: Filters, reporting_currency: str
) -> dict[str, Any]:
    """Totals and breakdowns: seed 004's `/tenant/{id}/summary` shape, for one tenant or for all."""
    totals = _grouped(cur, None, "month", rng, filters)
    out: dict[str, Any] = {"tenant_id": filters.tenant} if filters.tenant is not None else {}
    out |= rng.as_dict()
    merged = {c: sum(a[c] for a in totals.values()) for c in COUNTS}
    out["total_requests"], out["total_errors"] = merged["requests"], merged["errors"]
    for name in TOKENS:
        out[name if name == "total_tokens" else f"total_{name}"] = merged[name]
    out["unpriced_requests"] = merged["unpriced"]
    by_reporting = {rep: a["cost_reporting"] for (_, rep), a in totals.items()}
    out["total_cost"] = by_reporting.pop(reporting_currency, Decimal(0))
    out["reporting_currency"] = reporting_currency
    costs: dict[str, Decimal] = {}
    for agg in totals.values():
        for cur_name, amount in agg["costs"].items():
            costs[cur_name] = costs.get(cur_name, Decimal(0)) + amount
    out["costs_by_currency"] = dict(sorted(costs.items()))
    if by_reporting:
        out["other_reporting_currencies"] = by_reporting  # events priced before the reporting currency changed
    dims = ("tenant", "provider", "model", "feature")
    for dim in dims[1:] if filters.tenant is not None else dims:
        merged = merged_by_key(costs_by(cur, dim, rng, filters), reporting_currency)
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1]["cost"], -kv[1]["requests"], kv[0] or NONE_KEY))
        out[f"by_{dim}"] = {key or NONE_KEY: _entry(agg, reporting_currency) for key, agg in ranked}
    return out


def _entry(agg: dict[str, Any], reporting_currency: str) -> dict[str, Any]:
    """A summary breakdown's entry for one key (see `merged_by_key`)."""
    entry = {name: agg[name] for name in ("requests", "errors", "input_tokens", "output_tokens", "total_tokens")}
    entry |= {"costs": agg["costs"], "cost": agg["cost"], "reporting_currency": reporting_currency}
    if "other_reporting_currencies" in agg:
        entry["other_reporting_currencies"] = agg["other_reporting_currencies"]
    return entry


def merged_by_key(table: Table, reporting_currency: str) -> dict[Any, dict[str, Any]]:
    """The rows of a `costs_by` table merged per key: a key priced under several reporting currencies is one
    entry, its counts and `costs` summed, `cost` in `reporting_currency`; what it cost under an earlier
    reporting currency is kept apart in `other_reporting_currencies`, as in the totals."""
    col = {name: i for i, name in enumerate(table.columns)}
    out: dict[Any, dict[str, Any]] = {}
    for row in table.rows:
        entry = out.setdefault(row[0], {c: 0 for c in COUNTS} | {"costs": {}, "cost": Decimal(0)})
        for name in COUNTS:
            entry[name] += row[col[name]]
        for currency, amount in row[col["costs"]].items():
            entry["costs"][currency] = entry["costs"].get(currency, Decimal(0)) + amount
        reporting = row[col["reporting_currency"]]
        if reporting in (reporting_currency, None):
            entry["cost"] += row[col["cost_reporting"]]
        else:
            other = entry.setdefault("other_reporting_currencies", {})
            other[reporting] = other.get(reporting, Decimal(0)) + row[col["cost_reporting"]]
    return out


def summary_table(data: dict[str, Any]) -> Table:
    """A summary flattened for CSV: one row for the total, then one per breakdown entry."""
    columns = ["dimension", "key", "requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost",
               "reporting_currency"]  # fmt: skip
    rows: list[list[Any]] = [[
        "total", data.get("tenant_id"), data["total_requests"], data["total_errors"], data["total_input_tokens"],
        data["total_output_tokens"], data["total_tokens"], data["total_cost"], data["reporting_currency"],
    ]]  # fmt: skip
    for dim in ("tenant", "provider", "model", "feature"):
        for key, v in data.get(f"by_{dim}", {}).items():
            rows.append([dim, key, v["requests"], v["errors"], v["input_tokens"], v["output_tokens"],
                         v["total_tokens"], v["cost"], v["reporting_currency"]])  # fmt: skip
    return Table(columns, rows)


def token_trend(cur: duckdb.DuckDBPyConnection, rng: TimeRange, filters: Filters, reporting_currency: str) -> Table:
    """Input vs output tokens (and cost) per hour."""
    _check_hours(rng)
    src, params = _source(rng, "hour")
    where, wparams = filters.rollup_where()
    tokens = ", ".join(f"sum({t})::BIGINT AS {t}" for t in TOKENS)
    sql = (
        f"SELECT bucket AS hour, sum(requests)::BIGINT AS requests, {tokens}, "
        f"coalesce(sum(cost_reporting) FILTER (WHERE reporting_currency = ?), 0) AS cost_reporting "
        f"FROM {src} r WHERE {where} GROUP BY bucket ORDER BY bucket"
    )
    rows = [list(r) for r in cur.execute(sql, [reporting_currency, *params, *wparams]).fetchall()]
    columns = ["hour", "requests", *TOKENS, "cost_reporting"]
    return Table(columns, rows, brief=["hour", "requests", "input_tokens", "output_tokens", "cost_reporting"])


def _check_hours(rng: TimeRange) -> None:
    if rng.since is None or rng.until - rng.since > timedelta(hours=MAX_HOURS):
        raise QueryError("since", f"an hourly series covers at most {MAX_HOURS // 24} days; give a later since")


def bill(cur: duckdb.DuckDBPyConnection, month: TimeRange, reporting_currency: str) -> dict[str, Any]:
    """Per-tenant billing for one month: totals, cost per price currency, and a line per provider and model."""
    src, params = _source(month, "month")
    counts = ", ".join(f"sum({c})::BIGINT" for c in COUNTS)
    sql = (
        f"SELECT tenant_id, provider, model, currency, reporting_currency, {counts}, sum(total_cost), "
        f"sum(cost_reporting) FROM {src} r GROUP BY ALL ORDER BY tenant_id, provider, model, currency"
    )
    tenants: dict[str, dict[str, Any]] = {}
    for row in cur.execute(sql, params).fetchall():
        tenant, provider, model, currency, reporting = row[:5]
        values = dict(zip(COUNTS, row[5 : 5 + len(COUNTS)], strict=True))
        t = tenants.setdefault(tenant, {"tenant_id": tenant or None, **{c: 0 for c in COUNTS}, "costs": {},
                                        "cost_reporting": Decimal(0), "lines": []})  # fmt: skip
        for c in COUNTS:
            t[c] += values[c]
        if currency:
            t["costs"][currency] = t["costs"].get(currency, Decimal(0)) + row[-2]
        if reporting == reporting_currency:
            t["cost_reporting"] += row[-1]
        t["lines"].append({"provider": provider or None, "model": model or None, "currency": currency or None,
                           **values, "cost": row[-2], "cost_reporting": row[-1],
                           "reporting_currency": reporting or None})  # fmt: skip
    rows = sorted(tenants.values(), key=lambda t: (-t["cost_reporting"], t["tenant_id"] or ""))
    total = sum((t["cost_reporting"] for t in rows), Decimal(0))
    return {"month": iso(month.since or month.until)[:7], **month.as_dict(), "reporting_currency": reporting_currency,
            "total_cost": total, "tenants": rows}  # fmt: skip


def bill_table(data: dict[str, Any]) -> Table:
    columns = ["tenant", *COUNTS, "costs", "cost_reporting"]
    rows = [[t["tenant_id"], *(t[c] for c in COUNTS), t["costs"], t["cost_reporting"]] for t in data["tenants"]]
    return Table(columns, rows, brief=["tenant", "requests", "input_tokens", "output_tokens", "unpriced", "costs",
                                       "cost_reporting"])  # fmt: skip


# -- raw events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventQuery:
    rng: TimeRange
    filters: Filters
    status: str | None = None
    limit: int = 50
    cursor: str | None = None


def parse_status(value: str) -> tuple[str, list[Any]]:
    """`200`, `4xx`, `error` or `ok` as a condition on events."""
    text = value.strip().lower()
    if text == "error":
        return "(error_type IS NOT NULL OR status_code >= 400)", []
    if text == "ok":
        return "(error_type IS NULL AND status_code < 400)", []
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        base = int(text[0]) * 100
        return "status_code >= ? AND status_code < ?", [base, base + 100]
    if text.isdecimal() and 100 <= int(text) <= 599:
        return "status_code = ?", [int(text)]
    raise QueryError("status", f"expected an HTTP status (200), a class (4xx), 'ok' or 'error', got {value!r}")


def encode_cursor(ts: datetime, request_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([iso(ts), request_id])).decode().rstrip("=")


def _decode_cursor(value: str) -> tuple[datetime, str]:
    try:
        ts, request_id = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return parse_time("cursor", str(ts), datetime.now(UTC)), str(request_id)
    except (ValueError, TypeError, QueryError):
        raise QueryError("cursor", "not a cursor this API returned (use next_cursor as given)") from None


def events(cur: duckdb.DuckDBPyConnection, q: EventQuery) -> tuple[Table, str | None]:
    """The most recent events matching the filters, newest first; returns the page and the next page's cursor."""
    conds: list[str] = ["ts < ?"]
    params: list[Any] = [q.rng.until]
    if q.rng.since is not None:
        conds.append("ts >= ?")
        params.append(q.rng.since)
    f = q.filters
    for value, column in ((f.tenant, "tenant_id"), (f.provider, "provider"), (f.feature, "feature")):
        if value == "":  # none, as the rollups key it: the reports' `(none)` row lists these events
            conds.append(f"({column} IS NULL OR {column} = '')")
        elif value is not None:
            conds.append(f"{column} = ?")
            params.append(value)
    if f.model == "":
        conds.append("(model IS NULL OR model = '')")
    elif f.model is not None:
        conds.append("(model = ? OR model_requested = ?)")
        params += [f.model, f.model]
    if q.status:
        cond, sparams = parse_status(q.status)
        conds.append(cond)
        params += sparams
    if q.cursor:
        ts, request_id = _decode_cursor(q.cursor)
        conds.append("(ts < ? OR (ts = ? AND request_id < ?))")
        params += [ts, ts, request_id]
    sql = (
        f"SELECT {', '.join(COLUMN_NAMES)} FROM {EVENTS} WHERE {' AND '.join(conds)} "
        f"ORDER BY ts DESC, request_id DESC LIMIT {int(q.limit) + 1}"
    )
    rows = [_event_row(r) for r in cur.execute(sql, params).fetchall()]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    cursor = encode_cursor(rows[-1][1], rows[-1][0]) if more and rows else None
    brief = ["ts", "request_id", "tenant_id", "feature", "model", "status_code", "input_tokens", "output_tokens",
             "total_cost", "currency", "cost_reporting"]  # fmt: skip
    return Table(list(COLUMN_NAMES), rows, brief=brief), cursor


def event(cur: duckdb.DuckDBPyConnection, request_id: str) -> dict[str, Any] | None:
    row = cur.execute(f"SELECT {', '.join(COLUMN_NAMES)} FROM {EVENTS} WHERE request_id = ?", [request_id]).fetchone()
    if row is None:
        return None
    return dict(zip(COLUMN_NAMES, _event_row(row), strict=True))


def _event_row(row: tuple[Any, ...]) -> list[Any]:
    out = list(row)
    i = COLUMN_NAMES.index("tags")
    if isinstance(out[i], str):
        out[i] = orjson.loads(out[i])
    return out


# -- dashboard helpers ---------------------------------------------------------------------------


def totals(cur: duckdb.DuckDBPyConnection, rng: TimeRange, filters: Filters, reporting_currency: str) -> dict[str, Any]:
    """Totals over a range: the counts, `costs` per price currency, and `cost_reporting` in `reporting_currency`."""
    out: dict[str, Any] = {c: 0 for c in COUNTS} | {"costs": {}, "cost_reporting": Decimal(0)}
    for (_, reporting), agg in _grouped(cur, None, "month", rng, filters).items():
        for name in COUNTS:
            out[name] += agg[name]
        for currency, amount in agg["costs"].items():
            out["costs"][currency] = out["costs"].get(currency, Decimal(0)) + amount
        if reporting == reporting_currency:
            out["cost_reporting"] += agg["cost_reporting"]
    out["costs"] = dict(sorted(out["costs"].items()))
    return out


def series_by(
    cur: duckdb.DuckDBPyConnection, by: str, grain: str, rng: TimeRange, filters: Filters, reporting_currency: str
) -> dict[str, list[tuple[datetime, Decimal, int]]]:
    """{tenant (feature, model, provider): [(bucket, cost in the reporting currency, total tokens)]}, in time order."""
    if by not in BY or grain not in GRAINS:
        raise QueryError("by", f"expected one of {', '.join(BY)} by one of {', '.join(GRAINS)}")
    if grain == "hour":
        _check_hours(rng)
    src, params = _source(rng, grain)
    where, wparams = filters.rollup_where()
    sql = (
        f"SELECT {BY[by]} AS k, date_trunc('{grain}', bucket) AS b, "
        f"coalesce(sum(cost_reporting) FILTER (WHERE reporting_currency = ?), 0), sum(total_tokens)::BIGINT "
        f"FROM {src} r WHERE {where} GROUP BY ALL ORDER BY k, b"
    )
    out: dict[str, list[tuple[datetime, Decimal, int]]] = {}
    for key, bucket, cost, tokens in cur.execute(sql, [reporting_currency, *params, *wparams]).fetchall():
        out.setdefault(key or NONE_KEY, []).append((bucket, cost, tokens))
    return out


LATENCY_COLUMNS = ["model", "requests", "p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms"]


def latency(cur: duckdb.DuckDBPyConnection, rng: TimeRange, filters: Filters, limit: int = 20) -> Table:
    """p50/p95/p99 of duration and of time to first byte (streams) of successful requests: overall, then per model.

    Percentiles cannot be added up from rollups, so this reads raw events: keep `rng` short (a day).
    The overall row comes first with `model` None; events without a model are listed as "(none)".
    """
    where, params = filters.rollup_where()
    marks = "[0.5, 0.95, 0.99]"
    sql = (
        f"SELECT GROUPING(model) AS overall, model, count(*)::BIGINT AS n, quantile_cont(duration_ms, {marks}), "
        f"quantile_cont(ttft_ms, {marks}) FROM {EVENTS} WHERE ts >= ? AND ts < ? AND {where} "
        f"AND error_type IS NULL AND coalesce(status_code, 0) < 400 "
        f"GROUP BY GROUPING SETS ((model), ()) ORDER BY overall DESC, n DESC, model LIMIT ?"
    )
    since = rng.since or datetime.min.replace(tzinfo=UTC)
    rows = []
    for overall, model, n, duration, ttft in cur.execute(sql, [since, rng.until, *params, limit + 1]).fetchall():
        if overall and not n:
            continue
        rows.append([None if overall else (model or NONE_KEY), n, *_marks(duration), *_marks(ttft)])
    return Table(LATENCY_COLUMNS, rows)


def _marks(values: list[float | None] | None) -> list[float | None]:
    return [None if v is None else round(float(v), 1) for v in values] if values else [None, None, None]
