"""Once an admin key is configured the dashboard needs it, from a script (Bearer) or a browser (Basic auth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from gateway.demo_run import demo_config
from tests.support.gateway import LiveGateway

KEY = "mw-admin-test-key"


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveGateway]:
    monkeypatch.setenv("MW_DASHBOARD_TEST_ADMIN_KEY", KEY)
    cfg = demo_config(tmp_path / "events.duckdb", 0)
    cfg.raw = {"auth": {"admin_key_env": "MW_DASHBOARD_TEST_ADMIN_KEY"}}
    gw = LiveGateway(cfg).start()
    yield gw
    gw.stop()


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/tenants/acme", "/dashboard/export/models.csv"])
def test_without_the_key_the_dashboard_asks_for_it(guarded: LiveGateway, path: str) -> None:
    for auth in (None, ("ops", "wrong"), ("ops", "")):
        r = httpx.get(guarded.url + path, auth=auth)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic ")
    assert httpx.get(guarded.url + path, headers={"authorization": "Bearer nope"}).status_code == 401


def test_the_key_opens_it_as_basic_or_bearer(guarded: LiveGateway) -> None:
    assert httpx.get(guarded.url + "/dashboard", auth=("anyone", KEY)).status_code == 200
    assert httpx.get(guarded.url + "/dashboard", headers={"authorization": f"Bearer {KEY}"}).status_code == 200


def test_a_browser_with_the_key_sees_the_page(guarded: LiveGateway, browser: Browser) -> None:
    context = browser.new_context(http_credentials={"username": "ops", "password": KEY})
    page = context.new_page()
    response = page.goto(guarded.url + "/dashboard")
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == "Where the money goes"
    assert "Not configured" not in page.locator("#anomalies").inner_text()
    context.close()
