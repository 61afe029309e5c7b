"""`serve --workers 2`: both workers reserve and take through the store process, so a budget is one budget
and a rate limit one limit."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from functools import partial
from pathlib import Path

import httpx

from storage.tabular import decimal_text
from tests.gateway.test_governance import CHAT, ONE_REQUEST, governed
from tests.storage.serving import ServeGroup, wait_until
from tests.support.gateway import write_config
from tests.support.process import free_port
from tests.support.upstream import Upstream


def burst(url: str, n: int = 64) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)  # new connections: both workers
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            sends = [client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "acme"})
                     for _ in range(n)]  # fmt: skip
            return list(await asyncio.gather(*sends))

    return asyncio.run(send())


def shows(url: str, text: str) -> bool:
    """Whether the dashboard's budget section, from a fresh connection (either worker), shows `text`."""
    page = httpx.get(f"{url}/dashboard", timeout=30, headers={"connection": "close"}).text
    return text in page.split('id="budgets"', 1)[1].split("</section>", 1)[0]


def test_two_workers_share_one_budget_across_a_restart(upstream: Upstream, tmp_path: Path) -> None:
    limit = ONE_REQUEST * 10
    budget = {"name": "acme-daily", "tenant": "acme", "period": "day", "limit": str(limit), "currency": "USD",
              "hard": True}  # fmt: skip
    port = free_port()
    doc = governed(upstream, tmp_path, {"budgets": [budget], "server": {"port": port}}, "slowchat")
    config = write_config(tmp_path, doc)
    spent = Decimal(0)
    for run in range(2):
        gateway = ServeGroup(config, port, 2, tmp_path / f"serve{run}.log")
        try:
            gateway.start()
            responses = burst(gateway.url)
            ok = [r for r in responses if r.status_code == 200]
            refused = [r for r in responses if r.status_code == 429]
            assert len(ok) + len(refused) == 64
            assert all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
            assert "acme-daily" in refused[0].json()["error"]["message"]
            spent += sum(Decimal(r.headers["x-meterway-cost"]) for r in ok)
            if run == 0:
                assert 5 <= len(ok) <= 10
            for _ in range(4):  # whichever worker answers shows the shared spend
                status = httpx.get(f"{gateway.url}/admin/budgets", timeout=30).json()["budgets"][0]
                assert Decimal(status["spent"]) == spent and status["reserved"] == "0"
            shown = f'<data value="{decimal_text(spent)}" data-currency="USD"'
            for _ in range(4):  # and so does the dashboard's budget section, a second later at most
                wait_until(partial(shows, gateway.url, shown))
            assert gateway.terminate() == 0
        finally:
            gateway.stop()
        state = json.loads((tmp_path / "budgets.json").read_text())
        assert Decimal(state["spend"][0]["spent"]) == spent and state["reservations"] == []
    assert spent <= limit + ONE_REQUEST  # over both runs: the restarted gateway remembered the spend


def test_two_workers_take_from_one_rate_limit(upstream: Upstream, tmp_path: Path) -> None:
    port = free_port()
    limits = {"rate_limits": [{"tenant": "acme", "rpm": 10}], "server": {"port": port}}
    config = write_config(tmp_path, governed(upstream, tmp_path, limits, "slowchat"))
    metrics_dir = tmp_path / "metrics"
    gateway = ServeGroup(config, port, 2, tmp_path / "serve.log", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        gateway.start()
        responses = burst(gateway.url, 40)
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 429]
        assert len(ok) + len(refused) == 40
        assert all(r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"] for r in refused)
        # one bucket of 10 a minute for both workers (it refills 1 every 6 s while the burst runs)
        assert 10 <= len(ok) <= 11
        served = {f.name.rsplit("_", 1)[1] for f in metrics_dir.glob("counter_*.db")} - {"0.db"}
        assert len(served) >= 2, "both workers admitted requests"
        assert gateway.terminate() == 0
    finally:
        gateway.stop()
