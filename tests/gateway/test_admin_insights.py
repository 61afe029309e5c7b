"""/admin/forecast, /admin/recommendations and /admin/anomalies' filters on a live gateway with synthetic
history: a rising trend with a weekly cycle, and a week of an expensive model on short prompts.

The gateway's clock is fixed at a Thursday noon, so the month and the weekdays are known.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from storage.event import UsageEvent
from tests.storage.helpers import event
from tests.support.gateway import LiveGateway
from tests.support.governance import Clock, gateway_doc, metric, started, wait_until

NOW = datetime(2025, 6, 12, 12, 0, tzinfo=UTC)  # a Thursday
WEEK = [1.2, 1.25, 1.2, 1.15, 1.0, 0.6, 0.6]  # Monday first: quiet weekends
FACTORS = [f * 7 / sum(WEEK) for f in WEEK]
START = NOW.date() - timedelta(days=56)


def acme_day(day: date) -> float:
    return (20 + 0.2 * (day - START).days) * FACTORS[day.weekday()]


def globex_day(day: date) -> float:
    return 5 * FACTORS[day.weekday()]


def cost(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


def forecast_history() -> list[UsageEvent]:
    """56 days of spend with a rising trend and a weekly cycle, and the first half of today."""
    out = []
    for i in range((NOW.date() - START).days + 1):
        day = START + timedelta(days=i)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for hour in (2, 8, 14, 20):
            at = midnight + timedelta(hours=hour)
            if at > NOW:
                break
            out.append(event(ts=at, tenant_id="acme", total_cost=cost(acme_day(day) / 4)))
            out.append(event(ts=at, tenant_id="globex", total_cost=cost(globex_day(day) / 4)))
    return out


def advice_history() -> list[UsageEvent]:
    """1000 short-prompt requests to gpt-4.1 over the last week: 300 tokens in, 100 out, 0.0014 USD each."""
    return [
        event(ts=NOW - timedelta(minutes=10 * i), tenant_id="chatty", provider="openai", model="gpt-4.1",
              model_requested="gpt-4.1", input_tokens=300, output_tokens=100, total_cost=Decimal("0.0014"),
              price_id="openai/gpt-4.1@2025-04-14T00:00:00Z")
        for i in range(1, 1001)
    ]  # fmt: skip


def run_out_limit() -> float:
    """What acme spends from NOW (noon) to noon eight days later."""
    today = NOW.date()
    days = [today + timedelta(days=i) for i in range(1, 8)]
    return acme_day(today) / 2 + sum(acme_day(d) for d in days) + acme_day(today + timedelta(days=8)) / 2


@pytest.fixture(scope="module")
def insights_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    budgets = [
        {"name": "acme-monthly", "tenant": "acme", "period": "month", "limit": str(round(run_out_limit(), 6)),
         "currency": "USD"},
        {"name": "globex-daily", "tenant": "globex", "period": "day", "limit": "1000", "currency": "USD"},
    ]  # fmt: skip
    doc = gateway_doc(budgets=budgets)
    gw = started(tmp_path_factory.mktemp("insights"), doc, forecast_history() + advice_history(), Clock(NOW))
    try:
        yield gw
    finally:
        gw.stop()


def test_month_end_forecast_follows_the_weekly_cycle_and_budgets_run_out(insights_gateway: LiveGateway) -> None:
    gw = insights_gateway
    doc = httpx.get(f"{gw.url}/admin/forecast").json()
    assert doc["as_of"] == "2025-06-12T12:00:00Z" and doc["month"] == "2025-06" and doc["currency"] == "USD"
    assert "day-of-week" in doc["method"]

    june = [date(2025, 6, d) for d in range(1, 31)]
    acme_truth = sum(acme_day(d) for d in june)
    chatty_truth = 1.4 + 144 * 0.0014 * 18.5  # the week so far, then the same pace to the end of June
    truth = acme_truth + sum(globex_day(d) for d in june) + chatty_truth
    overall = {k: float(v) for k, v in doc["overall"].items() if k != "days_of_history"}
    assert abs(overall["expected"] / truth - 1) < 0.03, (overall, truth)
    assert overall["low"] <= truth <= overall["high"]
    acme = doc["tenants"][0]
    assert acme["tenant"] == "acme" and abs(float(acme["expected"]) / acme_truth - 1) < 0.03
    assert [t["tenant"] for t in doc["tenants"]] == ["acme", "globex", "chatty"]

    budgets = {b["name"]: b for b in doc["budgets"]}
    runs_out = datetime.fromisoformat(budgets["acme-monthly"]["runs_out_at"])
    assert abs(runs_out - (NOW + timedelta(days=8))) < timedelta(days=1), runs_out
    assert budgets["acme-monthly"]["runs_out_before_reset"] is True
    assert budgets["globex-daily"]["runs_out_at"] is None and budgets["globex-daily"]["resets_at"] == (
        "2025-06-13T00:00:00Z"
    )
    assert float(budgets["globex-daily"]["expected_daily_spend"]) == pytest.approx(globex_day(NOW.date()), rel=0.05)

    wait_until(lambda: metric(gw, "meterway_forecast_month_end", tenant="__all__") is not None)
    assert metric(gw, "meterway_forecast_month_end", tenant="__all__", currency="USD") == pytest.approx(
        overall["expected"], rel=1e-6
    )
    assert metric(gw, "meterway_forecast_month_end", tenant="acme") == pytest.approx(float(acme["expected"]), 1e-6)
    biggest = httpx.get(f"{gw.url}/admin/forecast", params={"limit": "1"}).json()
    assert [t["tenant"] for t in biggest["tenants"]] == ["acme"] and biggest["overall"] == doc["overall"]
    assert httpx.get(f"{gw.url}/admin/forecast", params={"limit": "0"}).json()["error"]["param"] == "limit"
    only = httpx.get(f"{gw.url}/admin/forecast", params={"tenant": "globex"}).json()
    assert [t["tenant"] for t in only["tenants"]] == ["globex"] and [b["name"] for b in only["budgets"]] == [
        "globex-daily"
    ]


def test_an_expensive_model_on_short_prompts_gets_smaller_model_advice(insights_gateway: LiveGateway) -> None:
    doc = httpx.get(f"{insights_gateway.url}/admin/recommendations").json()
    assert doc["window_days"] == 7 and doc["currency"] == "USD"
    (advice,) = doc["recommendations"]
    assert (advice["kind"], advice["tenant"], advice["provider"], advice["model"]) == (
        "smaller_model", "chatty", "openai", "gpt-4.1",
    )  # fmt: skip
    # 1.4 USD a week on gpt-4.1 against 0.28 on gpt-4.1-mini: 1.12 × 30/7 a month
    assert advice["monthly_saving"] == "4.8" and doc["total_monthly_saving"] == "4.8"
    assert "gpt-4.1-mini" in advice["advice"]
    evidence = advice["evidence"]
    assert evidence["requests"] == 1000 and evidence["avg_prompt_tokens"] == "300"
    assert evidence["alternative_price_id"] == "openai/gpt-4.1-mini@2025-04-14T00:00:00Z"
    assert evidence["prices_per_1m"]["input"] == "2" and evidence["recorded_cost"] == "1.4"
    assert (
        httpx.get(f"{insights_gateway.url}/admin/recommendations", params={"tenant": "acme"}).json()["recommendations"]
        == []
    )


@pytest.mark.parametrize(("params", "param"), [
    ({"since": "yesterday"}, "since"), ({"tenant": ""}, "tenant"), ({"limit": "0"}, "limit"),
    ({"colour": "red"}, "colour"),
])  # fmt: skip
def test_bad_anomaly_filters_get_a_clear_400(params: dict[str, str], param: str, insights_gateway: LiveGateway) -> None:
    r = httpx.get(f"{insights_gateway.url}/admin/anomalies", params=params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]
