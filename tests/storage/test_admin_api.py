"""The /admin query API and POST /v1/usage against a live gateway with the demo upstream."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from tests.support.gateway import LiveGateway

DEMO = {
    "providers": {"demo": {"kind": "demo", "base_url": "http://demo.invalid/v1", "price_as": "openai"}},
    "models": [{"name": "demo", "provider": "demo", "model": "gpt-4o-mini"}],
}
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 12}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gateway = LiveGateway.from_doc(tmp_path_factory.mktemp("admin"), DEMO).start()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for i in range(9):
            headers = {"x-tenant-id": ["acme", "globex", "acme"][i % 3], "x-feature": ["chat", "search"][i % 2]}
            assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
        client.post("/v1/chat/completions", json=CHAT, headers={"x-tenant-id": "acme", "x-demo-error": "500"})
    gateway.flush()
    yield gateway
    gateway.stop()


def get(gw: LiveGateway, path: str, **params: str) -> httpx.Response:
    return httpx.get(gw.url + path, params=params, timeout=30)


def test_tenant_summary(gw: LiveGateway) -> None:
    data = get(gw, "/admin/tenants/acme/summary").json()
    assert data["tenant_id"] == "acme" and data["total_requests"] == 7 and data["total_errors"] == 1
    assert data["reporting_currency"] == "USD" and Decimal(data["total_cost"]) > 0
    assert data["total_tokens"] == data["total_input_tokens"] + data["total_output_tokens"]
    assert data["by_provider"]["demo"]["requests"] == 7 and set(data["by_feature"]) == {"chat", "search", "(none)"}
    stored = sum(Decimal(e["cost_reporting"] or 0) for e in gw.events("tenant_id = 'acme'"))
    assert Decimal(data["total_cost"]) == stored


def test_a_tenant_id_with_a_slash_has_its_own_summary(tmp_path: Path) -> None:
    gateway = LiveGateway.from_doc(tmp_path, DEMO).start()
    try:
        for tenant in ("team/a", "team/a", "team"):
            r = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers={"x-tenant-id": tenant})
            assert r.status_code == 200
        gateway.flush()
        summary = get(gateway, "/admin/tenants/team%2Fa/summary")
        assert summary.status_code == 200 and summary.json()["tenant_id"] == "team/a", summary.text
        assert summary.json()["total_requests"] == 2
        assert sum(d["requests"] for d in get(gateway, "/admin/tenants/team%2Fa/daily").json()["data"]) == 2
        assert get(gateway, "/admin/tenants/team/summary").json()["total_requests"] == 1
    finally:
        gateway.stop()


def test_overall_summary_daily_top_tenants_and_breakdowns(gw: LiveGateway) -> None:
    overall = get(gw, "/admin/summary").json()
    assert overall["total_requests"] == 10 and set(overall["by_tenant"]) == {"acme", "globex"}
    daily = get(gw, "/admin/daily").json()["data"]
    assert sum(d["requests"] for d in daily) == 10 and len(daily[0]["day"]) == 10
    top = get(gw, "/admin/top-tenants", limit="1").json()["data"]
    assert [t["tenant"] for t in top] == ["acme"]
    by_model = get(gw, "/admin/costs/model").json()["data"]
    assert [m["model"] for m in by_model] == ["gpt-4o-mini"] and by_model[0]["costs"].keys() == {"USD"}
    trend = get(gw, "/admin/tokens/hourly").json()
    assert sum(h["input_tokens"] for h in trend["data"]) == overall["total_input_tokens"]
    assert get(gw, "/admin/tenants/globex/daily").json()["data"][0]["requests"] == 3


def test_csv_when_asked(gw: LiveGateway) -> None:
    r = httpx.get(gw.url + "/admin/costs/feature", headers={"accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["feature"] for row in rows} == {"chat", "search", ""} and sum(int(r["requests"]) for r in rows) == 10
    summary = httpx.get(gw.url + "/admin/tenants/acme/summary", headers={"accept": "text/csv"}).text
    assert summary.splitlines()[1].startswith("total,acme,7,1,")


def test_recent_events_filters_paging_and_lookup(gw: LiveGateway) -> None:
    first = get(gw, "/admin/events", tenant="acme", limit="4").json()
    assert len(first["data"]) == 4 and first["next_cursor"]
    rest = get(gw, "/admin/events", tenant="acme", limit="4", cursor=first["next_cursor"]).json()
    ids = [e["request_id"] for e in first["data"] + rest["data"]]
    assert len(ids) == len(set(ids)) == 7 and rest["next_cursor"] is None
    errors = get(gw, "/admin/events", status="error").json()["data"]
    assert [e["status_code"] for e in errors] == [500]
    one = get(gw, f"/admin/events/{ids[0]}").json()
    assert one["request_id"] == ids[0] and one["tenant_id"] == "acme"
    missing = get(gw, "/admin/events/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/admin/summary", {"since": "last tuesday"}, "since"),
        ("/admin/daily", {"since": "2025-03-02", "until": "2025-03-01"}, "since"),
        ("/admin/events", {"status": "teapot"}, "status"),
        ("/admin/events", {"limit": "0"}, "limit"),
        ("/admin/events", {"cursor": "garbage"}, "cursor"),
        ("/admin/costs/color", {}, "by"),
        ("/admin/top-tenants", {"tenat": "x"}, "tenat"),
        ("/admin/bill", {"month": "March"}, "month"),
        ("/admin/tokens/hourly", {"since": "2024-01-01"}, "since"),
        ("/admin/export", {"format": "xlsx"}, "format"),
        ("/admin/events", {"since": "999999w"}, "since"),  # times past what a datetime holds
        ("/admin/summary", {"until": "9999-12-31T23:30:00Z"}, "until"),
        ("/admin/summary", {"since": "0001-01-01T00:30:00+01:00"}, "since"),
        ("/admin/export", {"since": "999999d"}, "since"),
        ("/admin/bill", {"month": "0000-01"}, "month"),
        ("/admin/bill", {"month": "9999-12"}, "month"),
        ("/admin/events", {"limit": "\u00b2"}, "limit"),  # a digit int() does not read
        ("/admin/events", {"status": "\u00b2\u00b2\u00b2"}, "status"),
        ("/admin/reprice", {"since": "2d", "dry_run": "ture"}, "dry_run"),
    ],
)
def test_bad_parameters_are_400s_in_openai_format(
    gw: LiveGateway, path: str, params: dict[str, str], param: str
) -> None:
    r = httpx.post(gw.url + path, params=params) if path == "/admin/reprice" else get(gw, path, **params)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"].startswith(f"{param}: ") and err["type"] == "invalid_request_error"


def test_storage_status(gw: LiveGateway) -> None:
    data = get(gw, "/admin/storage").json()
    assert data["events"]["stored"] >= 10 and data["degraded"] is False and data["writer"]["dropped"] == 0


def test_post_usage_prices_stores_and_reports_rejects(gw: LiveGateway) -> None:
    records = [
        {"tenant_id": "ext", "provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 1000,
         "completion_tokens": 500, "timestamp": "2025-03-10T10:30:00Z", "latency_ms": 1500,
         "host": {"hostname": "app-1", "k8s": {"pod": "p1"}}},
        {"tenant_id": "ext", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": -1},
        {"tenant_id": "ext", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "colour": "red"},
    ]  # fmt: skip
    r = httpx.post(gw.url + "/v1/usage", json={"records": records})
    body = r.json()
    assert r.status_code == 200 and body["accepted"] == 1
    assert [(x["index"], x["error"].split(":")[0]) for x in body["rejected"]] == [(1, "input_tokens"), (2, "colour")]
    stored = gw.event(body["request_ids"][0])
    assert stored["usage_source"] == "provider" and stored["input_tokens"] == 1000 and stored["total_tokens"] == 1500
    assert stored["price_id"].startswith("openai/gpt-4o-mini") and stored["cost_reporting"] > 0
    assert orjson.loads(stored["tags"]) == {"host.hostname": "app-1", "host.k8s.pod": "p1"}
    assert stored["duration_ms"] == 1500
    again = httpx.post(gw.url + "/v1/usage", json=records[0]).json()
    assert again["request_ids"] == body["request_ids"]  # the same record is the same event
    assert len(gw.events("tenant_id = 'ext'")) == 1


def test_a_usage_record_sent_again_with_another_time_is_stored_once(gw: LiveGateway) -> None:
    """request_id is the event's key: a client re-sending a record under its id (a retry whose clock moved)
    must not double the tenant's tokens, however far apart the two timestamps are."""
    record = {"request_id": "order-42", "tenant_id": "resend", "provider": "openai", "model": "gpt-4o-mini",
              "input_tokens": 800, "output_tokens": 200, "ts": "2025-04-01T10:00:00Z"}  # fmt: skip
    for ts in ("2025-04-01T10:00:00Z", "2025-04-03T16:20:00Z"):
        r = httpx.post(gw.url + "/v1/usage", json={**record, "ts": ts})
        assert r.status_code == 200 and r.json()["request_ids"] == ["order-42"]
        gw.flush()
    stored = gw.events("tenant_id = 'resend'")
    assert len(stored) == 1 and stored[0]["total_tokens"] == 1000
    summary = get(gw, "/admin/summary", tenant="resend", since="2025-03-01", until="2025-05-01").json()
    assert (summary["total_requests"], summary["total_tokens"]) == (1, 1000)


def test_post_usage_with_nothing_valid_is_a_400(gw: LiveGateway) -> None:
    r = httpx.post(gw.url + "/v1/usage", json=[{"provider": "openai"}])
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("no record accepted; first problem: model: required")
    assert httpx.post(gw.url + "/v1/usage", content=b"{").json()["error"]["code"] == "invalid_json"


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveGateway]:
    monkeypatch.setenv("MW_TEST_ADMIN_KEY", "s3cret-admin")
    gateway = LiveGateway.from_doc(tmp_path, {**DEMO, "auth": {"admin_key_env": "MW_TEST_ADMIN_KEY"}}).start()
    yield gateway
    gateway.stop()


def test_admin_routes_need_the_admin_key_once_configured(guarded: LiveGateway) -> None:
    url = guarded.url
    for path in ("/admin/summary", "/admin/events/x", "/admin/nothing-here"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_key"
        assert r.headers["x-meterway-request-id"]
    assert httpx.get(url + "/admin/summary", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url + "/v1/usage", json={"provider": "a", "model": "b"}).status_code == 401
    ok = httpx.get(url + "/admin/summary", headers={"authorization": "Bearer s3cret-admin"})
    assert ok.status_code == 200 and ok.json()["total_requests"] == 0
    assert httpx.get(url + "/healthz").status_code == 200
    assert httpx.post(url + "/v1/chat/completions", json=CHAT).status_code == 200  # client traffic is not admin


@pytest.mark.parametrize(
    ("path", "params"),
    [("/admin/summary", {}), ("/admin/events", {"status": "error"}), ("/admin/export", {"format": "parquet"}),
     ("/dashboard", {}), ("/dashboard/export/latency.csv", {})],
)  # fmt: skip
def test_a_store_out_of_memory_is_a_503_naming_the_limit(
    gw: LiveGateway, monkeypatch: pytest.MonkeyPatch, path: str, params: dict[str, str]
) -> None:
    sink = gw.app.gateway.sink

    @contextlib.contextmanager
    def exhausted() -> Iterator[duckdb.DuckDBPyConnection]:
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB\nmore")
        yield

    monkeypatch.setattr(sink, "reader", exhausted)
    r = get(gw, path, **params)
    assert r.status_code == 503, r.text
    limit = "storage.work_memory_limit (now 256MB)" if path == "/admin/export" else "storage.memory_limit (now 128MB)"
    message = (
        "the store ran out of memory (Out of Memory Error: could not allocate block of size 256.0 KiB): "
        f"ask for a shorter time range (since / until) or raise {limit}"
    )
    if path.startswith("/dashboard"):
        assert r.headers["content-type"].startswith("text/html") and message in r.text
    else:
        assert r.json()["error"] == {"message": message, "type": "api_error", "param": None,
                                     "code": "store_out_of_memory"}  # fmt: skip
    monkeypatch.undo()
    assert get(gw, path, **params).status_code == 200  # the gateway is fine once there is room
