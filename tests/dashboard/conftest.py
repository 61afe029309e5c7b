"""Fixtures for the dashboard tests: a live gateway with demo traffic, and headless Chromium.

The browser is Debian's `chromium` (installed by `.ci/run`) driven by Playwright; a missing binary
fails the tests rather than skipping them, so a machine without it cannot pass silently.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from gateway.demo_run import backfill, burst, demo_config
from tests.support.gateway import LiveGateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="package")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """A gateway with two days of demo history, live demo traffic and a spend spike, all stored."""
    cfg = demo_config(tmp_path_factory.mktemp("dashboard") / "events.duckdb", 0)
    gw = LiveGateway(cfg).start()
    try:
        inner = gw.app.gateway
        price_as = {name: p.pricing_provider for name, p in cfg.providers.items()}
        backfill(inner.sink, inner.pricer, price_as, 2, datetime.now(UTC))
        with ThreadPoolExecutor(1) as pool:  # a loop of its own: Playwright's sync API may own this thread's
            pool.submit(asyncio.run, burst(gw.url, 60, random.Random(3), concurrency=16)).result()
            pool.submit(asyncio.run, burst(gw.url, 30, random.Random(4), spike=True)).result()
        gw.flush()
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="package")
def admin(demo_gateway: LiveGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_gateway.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page and every console error or uncaught exception it produced."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    w = Watched(context.new_page())
    yield w
    context.close()
    assert w.errors == []
