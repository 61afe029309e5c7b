"""Reports read rollups and must agree with the raw events; parameters are validated with clear messages."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import queries
from storage.duckdb_sink import DuckDBSink
from storage.timerange import QueryError, TimeRange, parse_month, parse_range, plan
from tests.storage.helpers import T0, event, write_segment

NOW = datetime(2025, 6, 1, 12, 34, tzinfo=UTC)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBSink]:
    tmp = tmp_path_factory.mktemp("queries")
    rng = random.Random(4)
    events = [
        event(
            ts=T0 + timedelta(minutes=rng.randrange(80 * 24 * 60)), tenant_id=rng.choice(["a", "b", "c", None]),
            model=rng.choice(["m1", "m2"]), feature=rng.choice(["chat", "search", None]),
            input_tokens=rng.randrange(1000), output_tokens=rng.randrange(300),
            total_cost=Decimal(rng.randrange(10**6)) / 10**9, status_code=rng.choice([200, 200, 500]),
            currency=rng.choice(["USD", "CNY"]),
        )
        for _ in range(600)
    ]  # fmt: skip
    for e in events:
        e.total_tokens = e.input_tokens + e.output_tokens
        e.cost_reporting = e.total_cost
    s = DuckDBSink(tmp / "q.duckdb")
    s.load_segment(write_segment(tmp / "seg.jsonl", events))
    yield s
    s.close()


def raw(sink: DuckDBSink, rng: TimeRange, key: str) -> dict[object, tuple[int, int, Decimal]]:
    cond, params = "ts < ?", [rng.until]
    if rng.since:
        cond, params = "ts >= ? AND ts < ?", [rng.since, rng.until]
    rows = sink.query(
        f"SELECT {key}, count(*), sum(total_tokens), sum(cost_reporting) FROM llm_usage_events WHERE {cond} GROUP BY 1",
        params,
    )
    return {k: (n, int(t), c) for k, n, t, c in rows}


hours = st.integers(0, 90 * 24)


@settings(max_examples=30, deadline=None)
@given(start=st.one_of(st.none(), hours), length=st.integers(1, 90 * 24))
def test_any_range_from_rollups_equals_the_raw_events(sink: DuckDBSink, start: int | None, length: int) -> None:
    since = None if start is None else T0 - timedelta(days=3) + timedelta(hours=start)
    until = (since or T0) + timedelta(hours=length)
    rng = TimeRange(since, until)
    with sink.reader() as cur:
        by_tenant = queries.costs_by(cur, "tenant", rng, queries.Filters())
        by_day = queries.costs_by(cur, "day", rng, queries.Filters())
    got = {r[0]: (r[1], r[9], r[11]) for r in by_tenant.rows}
    assert got == {k or None: v for k, v in raw(sink, rng, "tenant_id").items()}
    days = {r[0]: (r[1], r[9], r[11]) for r in by_day.rows}
    assert days == {k.date(): v for k, v in raw(sink, rng, "date_trunc('day', ts)").items()}


def test_plan_tiles_a_range_with_the_coarsest_buckets() -> None:
    rng = TimeRange(datetime(2025, 1, 30, 22, tzinfo=UTC), datetime(2025, 4, 2, 3, tzinfo=UTC))
    assert [(g, lo and lo.isoformat()[:13], hi.isoformat()[:13]) for g, lo, hi in plan(rng)] == [
        ("hour", "2025-01-30T22", "2025-01-31T00"),
        ("hour", "2025-04-02T00", "2025-04-02T03"),
        ("day", "2025-01-31T00", "2025-02-01T00"),
        ("day", "2025-04-01T00", "2025-04-02T00"),
        ("month", "2025-02-01T00", "2025-04-01T00"),
    ]
    assert plan(rng, "hour") == [("hour", rng.since, rng.until)]


def test_summary_for_one_tenant_matches_seed_004s_shape(sink: DuckDBSink) -> None:
    rng = parse_range(None, None, NOW)
    with sink.reader() as cur:
        data = queries.summary(cur, rng, queries.Filters(tenant="a"), "USD")
    n, tokens, cost = raw(sink, rng, "tenant_id")["a"]
    assert data["tenant_id"] == "a" and data["total_requests"] == n and data["total_tokens"] == tokens
    assert data["total_cost"] == cost and data["reporting_currency"] == "USD"
    assert sum(v["requests"] for v in data["by_model"].values()) == n
    assert set(data["by_provider"]) == {"acme"} and "by_tenant" not in data
    assert sum(data["costs_by_currency"].values()) == cost


def test_summary_breakdowns_count_every_event_after_a_reporting_currency_change(tmp_path: Path) -> None:
    """Events priced before the reporting currency changed keep their old reporting cost apart, as the
    totals do; every breakdown still adds up to the totals."""
    usd = [event(tenant_id="acme", cost_reporting=Decimal("0.5"), reporting_currency="USD") for _ in range(3)]
    cny = [event(tenant_id="acme", cost_reporting=Decimal("2"), reporting_currency="CNY") for _ in range(2)]
    sink = DuckDBSink(tmp_path / "e.duckdb")
    try:
        sink.load_segment(write_segment(tmp_path / "seg.jsonl", [*usd, *cny, event(tenant_id="globex")]))
        with sink.reader() as cur:
            data = queries.summary(cur, parse_range(None, None, NOW), queries.Filters(), "CNY")
    finally:
        sink.close()
    assert data["total_requests"] == 6 and data["other_reporting_currencies"] == {"USD": Decimal("1.50014")}
    acme = data["by_tenant"]["acme"]
    assert (acme["requests"], acme["cost"], acme["other_reporting_currencies"]) == (5, 4, {"USD": Decimal("1.5")})
    for dim in ("tenant", "provider", "model", "feature"):
        assert sum(v["requests"] for v in data[f"by_{dim}"].values()) == 6, dim


def test_an_empty_filter_means_none_for_events_as_for_reports(sink: DuckDBSink) -> None:
    """The reports' `(none)` row counts events without a tenant or feature; `tenant=` lists those events."""
    rng = parse_range(None, None, NOW)
    with sink.reader() as cur:
        for filters in (queries.Filters(tenant=""), queries.Filters(tenant="a", feature="")):
            reported = queries.summary(cur, rng, filters, "USD")["total_requests"]
            listed = queries.events(cur, queries.EventQuery(rng, filters, limit=1000))[0].rows
            assert len(listed) == reported > 0, filters


def test_events_page_newest_first_with_filters(sink: DuckDBSink) -> None:
    rng = parse_range(None, None, NOW, exact=True)
    seen: list[str] = []
    cursor = None
    with sink.reader() as cur:
        while True:
            q = queries.EventQuery(rng, queries.Filters(tenant="b", model="m2"), "5xx", limit=7, cursor=cursor)
            table, cursor = queries.events(cur, q)
            seen += [row[0] for row in table.rows]
            if cursor is None:
                break
        expected = sink.query(
            "SELECT request_id FROM llm_usage_events WHERE tenant_id = 'b' AND model = 'm2' AND status_code >= 500 "
            "ORDER BY ts DESC, request_id DESC"
        )
        assert seen == [r[0] for r in expected] and len(seen) > 7
        one = queries.event(cur, seen[0])
        assert one is not None and one["request_id"] == seen[0] and one["tags"] == {}
        assert queries.event(cur, "nope") is None


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "since: expected an ISO 8601 date or time"),
        ("2025-03-02", "2025-03-01", "since: must be before until"),
        (None, "2025-13-01", "until: expected an ISO 8601 date or time"),
        ("999999w", None, "since: '999999w' is out of range: times go from 1970-01-01 to 9000-01-01"),
        (None, "9999-12-31T23:30:00Z", "until: .* is out of range"),
        ("0001-01-01T00:30:00+01:00", None, "since: .* is out of range"),
    ],
)
def test_bad_ranges_say_which_parameter(since: str | None, until: str | None, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_range(since, until, NOW)


def test_relative_and_offset_times_are_utc() -> None:
    rng = parse_range("36h", "2025-06-01T14:00:00+02:00", NOW)
    assert rng.since == datetime(2025, 5, 31, 0, tzinfo=UTC) and rng.until == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert parse_month("2025-12") == TimeRange(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(QueryError, match="month: expected a month like 2025-03"):
        parse_month("2025-13")
    with pytest.raises(QueryError, match="status: expected an HTTP status"):
        queries.parse_status("teapot")
    with pytest.raises(QueryError, match="by: expected one of"):
        queries.costs_by(None, "color", rng, queries.Filters())  # type: ignore[arg-type]
