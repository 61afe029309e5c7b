"""Pricing under /admin: quotes, reloads (HTTP and SIGHUP) that keep the old book when the new one is bad."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import REPO, LiveGateway, write_config
from tests.support.process import GatewayProcess, free_port

NEW_ENTRY = """
  - provider: openai
    model: gpt-4o-mini
    currency: USD
    effective_from: 2026-01-01
    input: 1
    output: 2
    source: test correction
"""


def book_copy(tmp: Path) -> Path:
    book = tmp / "book"
    shutil.copytree(REPO / "pricing" / "book", book)
    return book


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveGateway]:
    monkeypatch.setenv("TEST_ADMIN_KEY", "admin-secret")
    doc = {
        "pricing": {"book": str(book_copy(tmp_path)), "reporting_currency": "USD"},
        "auth": {"admin_key_env": "TEST_ADMIN_KEY"},
        "tenants": {"acme": {"discount_percent": 20}},
    }
    live = LiveGateway.from_doc(tmp_path, doc).start()
    yield live
    live.stop()


ADMIN = {"Authorization": "Bearer admin-secret"}
QUOTE = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1_000_000, "output_tokens": 1_000_000}


def test_quote_needs_the_admin_key(gw: LiveGateway) -> None:
    r = httpx.post(f"{gw.url}/admin/quote", json=QUOTE)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_key"
    r = httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    for scheme in ("bearer", "BEARER"):  # the scheme is case-insensitive (RFC 7235)
        r = httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers={"Authorization": f"{scheme} admin-secret"})
        assert r.status_code == 200, r.text
    assert httpx.get(f"{gw.url}/admin/storage", headers={"Authorization": "bearer admin-secret"}).status_code == 200


def test_quote_with_breakdown_and_tenant_discount(gw: LiveGateway) -> None:
    r = httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers=ADMIN)
    assert r.status_code == 200
    quote = r.json()
    assert quote["pricing_status"] == "priced" and Decimal(quote["costs"]["total"]) == Decimal("0.75")
    discounted = httpx.post(f"{gw.url}/admin/quote", json={**QUOTE, "tenant": "acme"}, headers=ADMIN).json()
    assert Decimal(discounted["costs"]["total"]) == Decimal("0.6")
    bad = httpx.post(f"{gw.url}/admin/quote", json={**QUOTE, "input_tokens": -1}, headers=ADMIN)
    assert bad.status_code == 400 and "input_tokens" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"input_tokens": 100, "cached_tokens": 500}, "cached_tokens",
         "'cached_tokens' (500) must not exceed 'input_tokens' (100): cached tokens are part of the input"),
        ({"service_tier": "bogus"}, "service_tier", "'service_tier' 'bogus' is not a service tier the price book "
         "prices (known: batch, flex, priority); leave it out for standard prices"),
        ({"at": "garbage"}, "at", "'at' must be an ISO 8601 date or time like 2025-06-01T12:00:00Z, got 'garbage'"),
        ({"at": 20250601}, "at", "'at' must be an ISO 8601 date or time like 2025-06-01T12:00:00Z, got 20250601"),
        ({"cached_input_tokens": 800}, "cached_input_tokens", "unknown field(s) 'cached_input_tokens': expected "
         "provider, model, input_tokens, output_tokens, cached_tokens, at, tenant, thinking, service_tier"),
    ],
)  # fmt: skip
def test_quote_names_the_field_it_refuses(gw: LiveGateway, fields: dict[str, object], param: str, message: str) -> None:
    r = httpx.post(f"{gw.url}/admin/quote", json={**QUOTE, **fields}, headers=ADMIN)
    assert r.status_code == 400
    assert r.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_request"}
    }


def test_reload_refuses_a_bad_book_and_applies_a_good_one(gw: LiveGateway) -> None:
    book = gw.config.pricing.book
    openai_file = book / "openai.yaml"
    good = openai_file.read_text()
    openai_file.write_text(good + "\n  - provider: openai\n    model: broken\n    currency: USD\n    input: -3\n")
    r = httpx.post(f"{gw.url}/admin/prices/reload", headers=ADMIN)
    assert r.status_code == 422 and "old one stays" in r.json()["error"]["message"]
    quote = httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers=ADMIN).json()
    assert Decimal(quote["costs"]["total"]) == Decimal("0.75")

    openai_file.write_text(good + NEW_ENTRY)
    r = httpx.post(f"{gw.url}/admin/prices/reload", headers=ADMIN)
    assert r.status_code == 200 and r.json()["reloaded"] is True
    quote = httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers=ADMIN).json()
    assert Decimal(quote["costs"]["total"]) == Decimal(3)
    old = httpx.post(f"{gw.url}/admin/quote", json={**QUOTE, "at": "2025-06-01T00:00:00Z"}, headers=ADMIN).json()
    assert Decimal(old["costs"]["total"]) == Decimal("0.75"), "a past request keeps its old price"


def test_a_reload_that_edits_a_price_in_force_says_what_to_re_price(gw: LiveGateway) -> None:
    openai_file = gw.config.pricing.book / "openai.yaml"
    text = openai_file.read_text()
    edited = "effective_from: 2024-10-16\n    input: 0.15\n"
    assert edited in text
    openai_file.write_text(text.replace(edited, edited.replace("0.15", "0.2")))
    r = httpx.post(f"{gw.url}/admin/prices/reload", headers=ADMIN)
    assert r.status_code == 200 and r.json()["reloaded"] is True
    message = r.json()["message"]
    entry = "openai/gpt-4o-mini@2024-10-16T00:00:00Z"
    assert f"{entry}: in force since 2024-10-16, but its input 0.15 -> 0.2 changed" in message
    assert "`meterway reprice --since` the date each names" in message


def test_reload_refuses_a_book_without_a_rate_a_budget_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ADMIN_KEY", "admin-secret")
    book = tmp_path / "book.yaml"
    rate = 'fx: [{from: USD, to: EUR, rate: "0.9", effective_from: 2025-01-01}]\n'
    prices = "prices: [{provider: openai, model: gpt-4o-mini, currency: USD, effective_from: 2025-01-01, input: 1, "
    prices += "output: 2}]\n"
    book.write_text(rate + prices)
    budget = {"name": "eu", "period": "day", "limit": "5", "currency": "EUR", "hard": True}
    doc = {"pricing": {"book": str(book)}, "auth": {"admin_key_env": "TEST_ADMIN_KEY"}, "budgets": [budget]}
    gw = LiveGateway.from_doc(tmp_path, doc).start()
    try:
        version = httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers=ADMIN).json()["book_version"]
        book.write_text(prices)
        r = httpx.post(f"{gw.url}/admin/prices/reload", headers=ADMIN)
        assert r.status_code == 422
        assert r.json()["error"] == {
            "message": "price book not reloaded, the old one stays: budgets: 'eu' is in EUR, but the price book has "
            "no USD->EUR rate (its FX rates: none), so the requests it applies to priced in USD would be refused; "
            "add the rate to the book's fx, or use a currency it converts to",
            "type": "invalid_request_error", "param": None, "code": "invalid_price_book",
        }  # fmt: skip
        assert httpx.post(f"{gw.url}/admin/quote", json=QUOTE, headers=ADMIN).json()["book_version"] == version
    finally:
        gw.stop()


def test_sighup_reloads_the_book(tmp_path: Path) -> None:
    port = free_port()
    book = book_copy(tmp_path)
    cfg = write_config(tmp_path, {"server": {"port": port}, "pricing": {"book": str(book)}})
    proc = GatewayProcess(["serve", "--config", str(cfg)], cwd=REPO, log=tmp_path / "gw.log")
    proc.start(f"http://127.0.0.1:{port}/readyz")
    try:
        (book / "openai.yaml").write_text((book / "openai.yaml").read_text() + NEW_ENTRY)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        url = f"http://127.0.0.1:{port}/admin/quote"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the reload runs on the gateway's loop: wait until it is in force
            if Decimal(httpx.post(url, json=QUOTE).json()["costs"]["total"]) == 3:
                break
            time.sleep(0.02)
        assert Decimal(httpx.post(url, json=QUOTE).json()["costs"]["total"]) == 3
        assert "price book reload" in proc.log.read_text()
    finally:
        assert proc.terminate() == 0
