"""The dashboard's pieces on their own: charts, formatting, the query string, the new queries, escaping."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.dashboard import svg
from gateway.dashboard.fmt import change, money
from gateway.dashboard.params import View, parse_view, tenant_path
from gateway.demo_run import demo_config
from storage import queries
from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent
from storage.timerange import QueryError, TimeRange

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def test_nice_ticks_are_round_and_reach_the_top() -> None:
    assert svg.nice_ticks(0.37) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert svg.nice_ticks(1234) == [0, 500, 1000, 1500]
    assert svg.nice_ticks(0) == [0, 1]


def test_a_bar_chart_has_a_tooltip_per_bar_and_escapes_text() -> None:
    bars = [svg.Bar("Mon", 2.0, "<b>two</b>"), svg.Bar("Tue", 0.5, "half")]
    chart = svg.bar_chart(bars, title="Cost & more", desc="d", ident="c")
    assert chart.count("<rect") == 2 and "<title>&lt;b&gt;two&lt;/b&gt;</title>" in chart
    assert 'role="img"' in chart and '<title id="c-t">Cost &amp; more</title>' in chart
    assert "No data in this period" in svg.bar_chart([svg.Bar("Mon", 0, "")], title="t", desc="d", ident="e")


def test_a_line_chart_draws_each_series_with_a_legend() -> None:
    series = [svg.Series("in", [1, 2, 3], ["a", "b", "c"]), svg.Series("out", [0, 1, 0], ["d", "e", "f"])]
    chart = svg.line_chart(["1", "2", "3"], series, title="t", desc="d", ident="l")
    assert chart.count("<polyline") == 2 and chart.count("<circle") == 6 and ">out</text>" in chart


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    ("1234.5", "USD", "$1,234.50"), ("0.00421", "CNY", "¥0.0042"), ("12", "CHF", "12.00 CHF"),
    ("-3", "USD", "−$3.00"), ("0.00000001", "USD", "<$0.0001"), ("0", "EUR", "€0.00"),
])  # fmt: skip
def test_money_keeps_its_currency(amount: str, currency: str, shown: str) -> None:
    assert money(Decimal(amount), currency) == shown


def test_change_against_the_previous_period() -> None:
    assert change(Decimal(150), Decimal(100)) == ("+50.0%", "up")
    assert change(Decimal(50), Decimal(100)) == ("−50.0%", "down")
    assert change(Decimal(5), Decimal(0)) == ("new", "up")
    assert change(Decimal(0), Decimal(0)) == ("±0%", "flat")


def test_the_query_string_is_validated_and_round_trips() -> None:
    view = parse_view({"currency": "price", "days": "7", "tenant": "acme", "status": "5xx", "since": "1h"})
    assert view == View("price", 7, "acme", None, "5xx", "1h")
    assert parse_view({}) == View()
    assert View().query(currency="price") == "?currency=price"
    assert View(tenant="acme", page_tenant="acme").query() == ""
    assert View(tenant="acme", model="m").carry() == ""
    for bad in ({"days": "8"}, {"currency": "EUR"}, {"status": "teapot"}, {"since": "yesterday"}, {"page": "2"}):
        with pytest.raises(QueryError) as err:
            parse_view(bad)
        assert err.value.param == next(iter(bad))


def _event(i: int, tenant: str, hours_ago: int, duration: float) -> UsageEvent:
    return UsageEvent(
        request_id=f"r{i}", ts=NOW - timedelta(hours=hours_ago, minutes=i % 50), provider="p", model="m",
        endpoint="chat.completions", status_code=200, duration_ms=duration, tenant_id=tenant, input_tokens=10,
        output_tokens=5, total_tokens=15, usage_source="provider", currency="CNY", total_cost=Decimal("0.7"),
        cost_reporting=Decimal("0.1"), reporting_currency="USD", pricing_status="priced",
    )  # fmt: skip


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[DuckDBSink]:
    store = DuckDBSink(tmp_path / "q.duckdb")
    events = [_event(i, "acme", i % 3, 100.0 * (i + 1)) for i in range(10)]
    for i, event in enumerate(events):
        event.stream, event.ttft_ms = True, 10.0 * (i + 1)
    events += [_event(100 + i, "globex", 30, 5.0) for i in range(4)]
    failed = _event(200, "acme", 0, 99_999.0)
    failed.status_code, failed.error_type = 500, "upstream_error"
    events.append(failed)
    store.load_events(events)
    yield store
    store.close()


def test_totals_series_and_latency(sink: DuckDBSink) -> None:
    day = TimeRange(NOW.replace(hour=0, minute=0) - timedelta(days=2), NOW.replace(minute=0) + timedelta(hours=1))
    with sink.reader() as cur:
        totals = queries.totals(cur, day, queries.Filters(), "USD")
        assert (totals["requests"], totals["errors"]) == (15, 1)
        assert totals["cost_reporting"] == Decimal("1.5") and totals["costs"] == {"CNY": Decimal("10.5")}
        assert queries.totals(cur, day, queries.Filters(), "EUR")["cost_reporting"] == 0
        series = queries.series_by(cur, "tenant", "hour", day, queries.Filters(), "USD")
        assert sorted(series) == ["acme", "globex"] and len(series["acme"]) == 3
        assert sum(tokens for _, _, tokens in series["globex"]) == 60
        last_day = TimeRange(NOW - timedelta(hours=24), NOW + timedelta(minutes=1))
        table = queries.latency(cur, last_day, queries.Filters(tenant="acme"))
    overall = dict(zip(table.columns, table.rows[0], strict=True))
    assert overall["model"] is None and overall["requests"] == 10  # the failed request is left out
    assert overall["p50_ms"] == 550.0 and overall["ttft_p50_ms"] == 55.0
    assert [row[0] for row in table.rows] == [None, "m"]


def test_pages_escape_what_they_print_and_name_a_bad_parameter(tmp_path: Path) -> None:
    with TestClient(create_app(demo_config(tmp_path / "e.duckdb", 0))) as client:
        page = client.get("/dashboard/tenants/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        assert page.status_code == 200 and "<script>" not in page.text and "&lt;script&gt;" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        bad = client.get("/dashboard?days=8")
        assert bad.status_code == 400 and "days: expected one of 7, 30, 90" in bad.text
        for query, named in (("days=%C2%B2", "days: expected one of"), ("since=999999w", "is out of range"),
                             ("status=%C2%B2%C2%B2%C2%B2", "status:")):  # fmt: skip
            bad = client.get(f"/dashboard?{query}")
            assert bad.status_code == 400 and named in bad.text, (query, bad.status_code)
        missing = client.get("/dashboard/export/nothing.csv")
        assert missing.status_code == 404 and "no such download nothing.csv; there are " in missing.text
        assert "requests.csv" in missing.text
        csv = client.get("/dashboard/export/requests.csv")
        assert csv.status_code == 200 and csv.text.startswith("request_id,ts,")


def test_a_csv_download_keeps_a_spreadsheet_from_running_client_text(tmp_path: Path) -> None:
    """Tenant names come from request headers: a download opened in a spreadsheet must not run one as a formula.
    The query API's CSV, read by scripts, keeps every value as stored."""
    formula = '=HYPERLINK("http://evil.example","open")'
    store = DuckDBSink(tmp_path / "e.duckdb")
    events = [_event(1, formula, 0, 10.0), _event(2, "-2+3", 0, 10.0), _event(3, "acme", 0, 10.0)]
    for event in events:
        event.ts = datetime.now(UTC)
    store.load_events(events)
    store.close()
    with TestClient(create_app(demo_config(tmp_path / "e.duckdb", 0))) as client:
        rows = list(csv.DictReader(io.StringIO(client.get("/dashboard/export/requests.csv").text)))
        assert sorted(row["tenant_id"] for row in rows) == ["'-2+3", "'" + formula, "acme"]
        raw = client.get("/admin/events", headers={"accept": "text/csv"})
        assert sorted(row["tenant_id"] for row in csv.DictReader(io.StringIO(raw.text))) == ["-2+3", formula, "acme"]


def test_unpriced_usage_is_counted_beside_the_amounts_never_shown_as_free(tmp_path: Path) -> None:
    """SPEC: unpriced is never a silent zero. A tenant whose usage the book cannot price shows how many
    requests are missing from each amount."""
    store = DuckDBSink(tmp_path / "e.duckdb")
    priced, unpriced = _event(1, "acme", 0, 10.0), _event(2, "acme", 0, 10.0)
    unpriced.model, unpriced.currency, unpriced.total_cost, unpriced.cost_reporting = "gpt-unknown", None, None, None
    unpriced.pricing_status, unpriced.reporting_currency = "unpriced", None
    for event in (priced, unpriced):
        event.ts = datetime.now(UTC)
    store.load_events([priced, unpriced])
    store.close()
    with TestClient(create_app(demo_config(tmp_path / "e.duckdb", 0))) as client:
        page = client.get("/dashboard/tenants/acme")
    assert page.status_code == 200
    today = page.text.split('id="period-0"', 1)[1].split("</section>", 1)[0]
    assert "+ 1 unpriced" in today
    models = page.text.split("gpt-unknown", 1)[1].split("</tr>", 1)[0]
    assert "+ 1 unpriced" in models, "the model's cost cell must not read as $0.00 alone"


def test_a_tenant_id_that_looks_like_a_download_path_still_gets_its_own_page(tmp_path: Path) -> None:
    """Tenant ids come from request headers and may hold "/": the page's links encode it, and the route tells a
    tenant's page from a tenant's download on the path as sent, so neither reads another tenant's numbers."""
    store = DuckDBSink(tmp_path / "e.duckdb")
    events = [_event(1, "team/export/models.csv", 0, 10.0), _event(2, "team", 0, 10.0), _event(3, "team", 0, 10.0)]
    for event in events:
        event.ts = datetime.now(UTC)
    store.load_events(events)
    store.close()
    odd = tenant_path("team/export/models.csv")
    with TestClient(create_app(demo_config(tmp_path / "e.duckdb", 0))) as client:
        page = client.get(odd)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "team/export/models.csv" in page.text
        mine = list(csv.DictReader(io.StringIO(client.get(odd + "/export/requests.csv").text)))
        assert [row["tenant_id"] for row in mine] == ["team/export/models.csv"]
        theirs = list(csv.DictReader(io.StringIO(client.get(tenant_path("team") + "/export/requests.csv").text)))
        assert sorted(row["request_id"] for row in theirs) == ["r2", "r3"]
        nested = client.get("/dashboard/tenants/org/unit")  # typed by hand, "/" unencoded: still one tenant id
        assert nested.status_code == 200 and "org/unit" in nested.text
