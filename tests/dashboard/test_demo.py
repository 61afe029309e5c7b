"""`meterway demo` as a real process: it serves, fills in history, spikes, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from governance.anomaly import Anomaly, AnomalyRules, detect
from governance.config import AnomalyConfig
from tests.support.process import GatewayProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def spend_anomalies(base: str) -> list[Anomaly]:
    """The governance anomaly rules over globex's hourly spend, as the query API reports it."""
    rows = httpx.get(f"{base}/admin/costs/hour", params={"tenant": "globex", "since": "6d"}, timeout=30).json()
    series = [(datetime.fromisoformat(r["hour"]), Decimal(r["cost_reporting"])) for r in rows["data"]]
    now = datetime.now(UTC)
    hours = [now - timedelta(hours=1), now]
    rules = AnomalyRules.from_config(AnomalyConfig(), "spend")
    return detect(series, tenant="globex", metric="spend", rules=rules, hours=hours)


def test_demo_serves_spikes_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["demo", "--port", str(port), "--data", str(tmp_path / "demo.duckdb"), "--history-days", "4",
            "--spike-after", "3"]  # fmt: skip
    proc = GatewayProcess(args, cwd=REPO, log=tmp_path / "demo.log")
    proc.start(f"{base}/healthz")
    try:
        found: list[Anomaly] = []
        deadline = time.monotonic() + 45
        while not found and time.monotonic() < deadline:
            time.sleep(1)
            found = spend_anomalies(base)
        assert found, proc.log.read_text()
        assert found[-1].observed >= AnomalyConfig().min_spend
        summary = httpx.get(f"{base}/admin/summary", params={"since": "5d"}, timeout=30).json()
        assert summary["total_requests"] > 1000 and set(summary["costs_by_currency"]) == {"CNY", "USD"}
        live = httpx.get(f"{base}/admin/events", params={"tenant": "globex", "model": "gpt-4o", "since": "10m"})
        assert any(not e["request_id"].startswith("demo-history-") for e in live.json()["data"])
        page = httpx.get(f"{base}/dashboard", timeout=30)
        assert page.status_code == 200
        anomalies = page.text.split('id="anomalies"', 1)[1].split("</section>", 1)[0]
        assert "globex" in anomalies and "spend" in anomalies

        def logged() -> set[tuple[str, str]]:  # what the anomaly checks stored (and notify), every 10 s in the demo
            found = httpx.get(f"{base}/admin/anomalies", params={"tenant": "globex"}, timeout=30).json()
            return {(a["tenant"], a["metric"]) for a in found["anomalies"]}

        deadline = time.monotonic() + 60
        while ("globex", "spend") not in logged() and time.monotonic() < deadline:
            time.sleep(1)
        assert ("globex", "spend") in logged(), proc.log.read_text()
        code = proc.terminate(signal.SIGINT)
    finally:
        proc.kill()
    log = proc.log.read_text()
    assert code == 0, log
    for line in (f"dashboard:  {base}/dashboard", f"metrics:    {base}/metrics", f"curl -s {base}/v1/chat/completions",
                 f'OpenAI(base_url="{base}/v1"', "demo stopped"):  # fmt: skip
        assert line in log
    assert "Traceback" not in log
