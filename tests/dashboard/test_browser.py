"""The dashboard in headless Chromium: its numbers are the query API's, filters work, it is keyboard usable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Locator, Page

from tests.dashboard.conftest import Watched
from tests.support.gateway import LiveGateway


def ranges(section: Locator) -> dict[str, str]:
    since, until = section.get_attribute("data-since"), section.get_attribute("data-until")
    assert since and until
    return {"since": since, "until": until}


def row_costs(page: Page, section: str) -> dict[str, str]:
    """{row header: the row's first money value} of a section's table."""
    out = {}
    for row in page.locator(f"#{section} tbody tr").all():
        key = (row.locator("th").text_content() or "").strip()
        out[key] = row.locator("data[data-currency]").first.get_attribute("value") or ""
    return out


def api(admin: httpx.Client, path: str, **params: Any) -> Any:
    response = admin.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_overview_shows_the_numbers_the_query_api_returns(
    demo_gateway: LiveGateway, admin: httpx.Client, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    assert page.locator("h1").inner_text() == "Where the money goes"

    for i in range(3):
        card = page.locator(f"#period-{i}")
        summary = api(admin, "/admin/summary", **ranges(card))
        assert card.locator(".big data").get_attribute("value") == summary["total_cost"]
        assert card.locator(".big data").get_attribute("data-currency") == "USD"
    today = api(admin, "/admin/summary", **ranges(page.locator("#period-0")))
    assert today["total_requests"] > 0

    for section, path, key in (("models", "/admin/costs/model", "model"), ("features", "/admin/costs/feature",
                               "feature"), ("providers", "/admin/costs/provider", "provider")):  # fmt: skip
        rows = api(admin, path, **ranges(page.locator(f"#{section}")))["data"]
        assert row_costs(page, section) == {r[key]: r["cost_reporting"] for r in rows}
    tenants = api(admin, "/admin/top-tenants", limit=10, **ranges(page.locator("#tenants")))["data"]
    assert row_costs(page, "tenants") == {r["tenant"]: r["cost_reporting"] for r in tenants}
    assert "globex" in row_costs(page, "tenants")

    daily = api(admin, "/admin/daily", **ranges(page.locator("#daily")))["data"]
    shown = {k: v for k, v in row_costs(page, "daily").items() if v != "0"}
    assert shown == {r["day"]: r["cost_reporting"] for r in daily}

    events = api(admin, "/admin/events", limit=50, **ranges(page.locator("#requests")))["data"]
    assert page.locator("#requests tbody tr code").all_inner_texts() == [e["request_id"] for e in events]


def test_the_charts_are_drawn_with_tooltips(demo_gateway: LiveGateway, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    bars = page.locator("#daily svg rect.bar")
    assert bars.count() == 30
    assert "$" in (bars.last.locator("title").text_content() or "")
    assert page.locator("#tokens svg polyline").count() == 2
    assert page.locator("#tokens svg[role=img] title").first.text_content() == (
        "Input and output tokens per hour, last 48 hours"
    )


def test_filters_change_the_requests_table(demo_gateway: LiveGateway, admin: httpx.Client, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    everyone = set(page.locator("#requests tbody tr td:nth-of-type(1)").all_inner_texts())
    assert len(everyone) > 1

    page.select_option("#f-tenant", "globex")
    page.select_option("#f-model", "gpt-4o")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert "tenant=globex" in page.url and "model=gpt-4o" in page.url
    tenants = page.locator("#requests tbody tr td:nth-of-type(1)").all_inner_texts()
    models = page.locator("#requests tbody tr td:nth-of-type(2)").all_inner_texts()
    assert tenants and set(tenants) == {"globex"} and set(models) == {"gpt-4o"}
    expected = api(admin, "/admin/events", tenant="globex", model="gpt-4o", limit=50,
                   **ranges(page.locator("#requests")))["data"]  # fmt: skip
    assert page.locator("#requests tbody tr code").all_inner_texts() == [e["request_id"] for e in expected]

    page.select_option("#f-tenant", "")
    page.select_option("#f-model", "")
    page.select_option("#f-status", "error")
    page.select_option("#f-since", "7d")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    statuses = page.locator("#requests tbody tr td:nth-of-type(4)").all_inner_texts()
    assert statuses and all(s.split()[0][0] in "45" for s in statuses)
    assert page.locator("#f-status").input_value() == "error"


def test_keyboard_reaches_and_submits_the_filter_form(demo_gateway: LiveGateway, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(300):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f-tenant":
            break
    else:
        raise AssertionError("Tab never reached the tenant filter")
    page.keyboard.press("ArrowDown")  # the first tenant after "any tenant"
    chosen = page.locator("#f-tenant").input_value()
    assert chosen
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.type") == "submit":
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert f"tenant={chosen}" in page.url
    assert set(page.locator("#requests tbody tr td:nth-of-type(1)").all_inner_texts()) == {chosen}


def test_currency_switch_shows_each_price_currency(
    demo_gateway: LiveGateway, admin: httpx.Client, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    with page.expect_navigation():
        page.click("text=price currencies")
    assert "currency=price" in page.url
    assert page.locator(".switch a[aria-current]").first.inner_text() == "price currencies"
    card = page.locator("#period-2")
    shown = {d.get_attribute("data-currency"): d.get_attribute("value") for d in card.locator(".big data").all()}
    assert shown == api(admin, "/admin/summary", **ranges(card))["costs_by_currency"]
    assert set(shown) == {"CNY", "USD"}
    assert page.locator("#daily svg[role=img]").count() == 2  # one chart per price currency


def test_tenant_page(demo_gateway: LiveGateway, admin: httpx.Client, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    with page.expect_navigation():
        page.click("#tenants a:text-is('globex')")
    assert page.url.startswith(f"{demo_gateway.url}/dashboard/tenants/globex")
    assert page.locator("h1").inner_text() == "Tenant globex"
    card = page.locator("#period-0")
    summary = api(admin, "/admin/tenants/globex/summary", **ranges(card))
    assert card.locator(".big data").get_attribute("value") == summary["total_cost"]
    assert page.locator("#tenants").count() == 0 and page.locator("#f-tenant").count() == 0
    assert set(page.locator("#requests tbody tr td:nth-of-type(1)").all_inner_texts()) == {"globex"}
    assert page.locator("#budgets tbody th").all_inner_texts() == ["globex-daily"]


def test_csv_download_is_the_query_api_table(demo_gateway: LiveGateway, admin: httpx.Client, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{demo_gateway.url}/dashboard")
    with page.expect_download() as download:
        page.click("#models a[href*='export/models.csv']")
    text = Path(download.value.path()).read_text()
    expected = admin.get("/admin/costs/model", params=ranges(page.locator("#models")), headers={"accept": "text/csv"})
    assert text == expected.text and text.startswith("model,requests,")


def test_screenshots_at_desktop_and_phone_width(demo_gateway: LiveGateway, browser: Browser, tmp_path: Path) -> None:
    for name, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        watched = Watched(context.new_page())
        page = watched.page
        page.goto(f"{demo_gateway.url}/dashboard")
        page.screenshot(path=str(tmp_path / f"dashboard-{name}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        context.close()
        assert watched.errors == []
        assert (tmp_path / f"dashboard-{name}.png").stat().st_size > 10_000
