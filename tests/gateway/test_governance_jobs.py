"""The governance schedule on a live gateway: an anomaly found and notified once, across passes and
restarts, and the daily spend report delivered when its time comes.

Synthetic history goes straight into the gateway's store before it starts; the schedule's interval and
clock are set on the gateway's `GovernanceJobs`, so nothing waits for real time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from governance.notify import SIGNATURE_HEADER, verify_signature
from storage.event import UsageEvent
from tests.storage.helpers import event
from tests.support.governance import SECRET, SECRET_ENV, Clock, gateway_doc, jobs_of, metric, settle, started
from tests.support.hook import HookReceiver


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookReceiver]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with HookReceiver() as receiver:
        yield receiver


# -- anomalies ---------------------------------------------------------------------------------


def spike_history(now: datetime) -> list[UsageEvent]:
    """A week of the same hour for two tenants, then acme spends 2 USD in the latest hour against ~0.11."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    out = []
    for d in range(1, 8):
        usual = Decimal("0.10") + Decimal("0.01") * (d % 3)
        out.append(event(ts=hour - timedelta(days=d, minutes=-5), tenant_id="acme", total_cost=usual,
                         input_tokens=800, output_tokens=200))  # fmt: skip
        out.append(event(ts=hour - timedelta(days=d, minutes=-5), tenant_id="globex", total_cost=Decimal("0.2")))
    out.append(event(ts=hour, tenant_id="acme", total_cost=Decimal(2), input_tokens=800, output_tokens=200))
    out.append(event(ts=hour, tenant_id="globex", total_cost=Decimal("0.2")))
    return out


def test_a_spike_is_stored_and_notified_once_across_runs_and_restarts(tmp_path: Path, hook: HookReceiver) -> None:
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    doc = gateway_doc(hook.url, ("anomaly",))
    gw = started(tmp_path, doc, spike_history(now))
    try:
        hook.wait_for(1)
        settle(gw, 3)  # the job ran again, and again: nothing new
        assert len(hook.received) == 1
        headers, body = hook.received[0]
        assert verify_signature(SECRET.encode(), body, headers.get(SIGNATURE_HEADER))
        sent = hook.documents()[0]
        assert sent["event"] == "anomaly" and sent["payload"]["tenant"] == "acme"
        assert sent["payload"]["metric"] == "spend" and sent["payload"]["observed"] == "2"

        listed = httpx.get(f"{gw.url}/admin/anomalies").json()
        assert listed["total"] == 1
        (item,) = listed["anomalies"]
        assert (item["tenant"], item["metric"], item["unit"]) == ("acme", "spend", "USD")
        assert item["hour"] == hour.strftime("%Y-%m-%dT%H:00:00Z") and item["detected_at"].endswith("Z")
        assert item["baseline"] == ["0.11", "0.12", "0.1", "0.11", "0.12", "0.1", "0.11"]
        assert item["baseline_mean"] == "0.11" and item["ratio"] == "18.182"
        assert "multiplier" in item["rules"] and "z_score" in item["rules"] and "acme" in item["message"]
        assert httpx.get(f"{gw.url}/admin/anomalies", params={"tenant": "globex"}).json()["anomalies"] == []
        assert httpx.get(f"{gw.url}/admin/anomalies", params={"since": "2h"}).json()["total"] == 1
        future = (now + timedelta(hours=2)).isoformat()
        assert httpx.get(f"{gw.url}/admin/anomalies", params={"since": future}).json()["total"] == 0
        assert metric(gw, "meterway_anomalies_total", metric="spend") == 1.0
        assert metric(gw, "meterway_anomalies_total", metric="tokens") == 0.0
        assert len((tmp_path / "anomalies.jsonl").read_text().splitlines()) == 1
    finally:
        gw.stop()

    again = started(tmp_path, doc)
    try:
        settle(again, 3)
        assert len(hook.received) == 1
        assert httpx.get(f"{again.url}/admin/anomalies").json()["anomalies"][0]["tenant"] == "acme"
    finally:
        again.stop()


# -- reports -----------------------------------------------------------------------------------


def test_a_gateway_whose_channels_only_log_notifies_without_an_http_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = gateway_doc(notifications=[{"name": "ops-log", "kind": "log", "events": ["anomaly"]}])
    gw = started(tmp_path, doc, spike_history(datetime.now(UTC)))
    try:
        settle(gw, 2)
        governance = gw.app.gateway.governance
        assert governance is not None and governance.client is None  # no TLS trust store loaded for nothing
        assert "[anomaly]" in caplog.text and "acme" in caplog.text
    finally:
        gw.stop()


def test_the_daily_report_goes_out_when_its_time_comes_and_only_once(tmp_path: Path, hook: HookReceiver) -> None:
    clock = Clock(datetime(2025, 6, 12, 7, 59, 30, tzinfo=UTC))
    yesterday, before = datetime(2025, 6, 11, 9, tzinfo=UTC), datetime(2025, 6, 10, 9, tzinfo=UTC)
    history = [event(ts=yesterday + timedelta(hours=i), tenant_id="acme", total_cost=Decimal("1.5")) for i in range(3)]
    history += [event(ts=yesterday, tenant_id="globex", total_cost=Decimal("0.5"))]
    history += [event(ts=before + timedelta(hours=i), tenant_id="acme", total_cost=Decimal(2)) for i in range(2)]
    doc = gateway_doc(hook.url, ("report.*",), alerts={"daily_report": {"at": "08:00"},
                                                     "weekly_report": {"day": "monday", "at": "08:00"}})  # fmt: skip
    gw = started(tmp_path, doc, history, clock)
    try:
        settle(gw, 2)
        assert hook.received == []  # 07:59:30: not yet
        clock.now = datetime(2025, 6, 12, 8, 0, 5, tzinfo=UTC)
        jobs_of(gw).wake()
        hook.wait_for(1)
        report = hook.documents()[0]
        assert report["event"] == "report.daily" and "2025-06-11" in report["title"]
        payload = report["payload"]
        assert (payload["start"], payload["end"]) == ("2025-06-11T00:00:00Z", "2025-06-12T00:00:00Z")
        assert (payload["total"], payload["previous_total"], payload["change"]) == ("5", "4", "+25%")
        assert payload["requests"] == 4 and payload["by_tenant"][0] == {"tenant": "acme", "cost": "4.5"}
        clock.now += timedelta(minutes=10)
        jobs_of(gw).wake()
        settle(gw, 2)
        assert len(hook.received) == 1
    finally:
        gw.stop()

    again = started(tmp_path, doc, clock=clock)
    try:
        settle(again, 2)
        assert len(hook.received) == 1  # a restart does not send it again
    finally:
        again.stop()
