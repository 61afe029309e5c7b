"""Gateway keys, race-free budgets and rate limits on a live gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import pytest
from aiohttp import web

from tests.gateway import scripts
from tests.support.gateway import REPO, LiveGateway, write_config
from tests.support.upstream import Upstream

ONE_REQUEST = Decimal("0.0000036")  # 12 input + 3 output tokens of gpt-4o-mini ($0.15 / $0.60 per 1M)
CHAT = {"model": "gpt-4o-mini", "max_tokens": 3, "messages": [{"role": "user", "content": "Say hi"}]}


def governed(upstream: Upstream, tmp: Path, extra: dict[str, object], script: str = "chat") -> dict[str, object]:
    upstream.scripts.update(scripts.ALL)
    return {
        "providers": {
            "up": {"kind": "openai", "base_url": upstream.script_url(script), "price_as": "openai"},
            "echo": {"kind": "openai", "base_url": upstream.script_url("echo"), "price_as": "openai"},
        },
        "models": [{"name": "gpt-4o-mini", "provider": "up"}, {"name": "echo-model", "provider": "echo"}],
        **extra,
    }


def add_claude(doc: dict[str, object], base_url: str) -> None:
    """A provider `claude` of the Anthropic kind (raw pass-through at /claude)."""
    doc["providers"]["claude"] = {"kind": "anthropic", "base_url": base_url, "price_as": "anthropic"}  # type: ignore[index]


def keys_create(config: Path, tenant: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`meterway keys create` run as a user would, its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "create", "--tenant", tenant, "--config", str(config), *extra],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip


def create_key(config: Path, tenant: str, *extra: str) -> str:
    out = keys_create(config, tenant, *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def keyed(upstream: Upstream, tmp_path: Path) -> Iterator[tuple[LiveGateway, str, Path]]:
    doc = governed(upstream, tmp_path, {"auth": {"require_keys": True}})
    config = write_config(tmp_path, doc)
    key = create_key(config, "acme", "--name", "ci")
    live = LiveGateway.from_doc(tmp_path, doc).start()
    yield live, key, config
    live.stop()


def test_requests_need_a_valid_key_in_the_called_apis_format(keyed: tuple[LiveGateway, str, Path]) -> None:
    gw, key, _ = keyed
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer mw-not-a-key"})
    assert r.status_code == 401
    assert gw.event(r.headers["x-meterway-request-id"])["status_code"] == 401
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


def test_a_request_refused_for_want_of_a_key_is_nobodys_whatever_its_headers_claim(
    keyed: tuple[LiveGateway, str, Path],
) -> None:
    """SPEC: once keys are configured the key decides the tenant. Keyless callers naming tenants must neither
    appear under those tenants in reports nor take the tenant label slots of /metrics from keyed tenants."""
    gw, key, _ = keyed
    claims = {"X-Tenant-Id": "spoofed", "X-Feature": "spoofed-feature", "X-User-Id": "spoofed-user"}
    for auth in ({}, {"Authorization": "Bearer mw-not-a-key"}):
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={**claims, **auth})
        assert r.status_code == 401
        event = gw.event(r.headers["x-meterway-request-id"])
        assert (event["tenant_id"], event["feature"], event["user_id"]) == (None, None, None)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and gw.event(r.headers["x-meterway-request-id"])["tenant_id"] == "acme"
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'tenant="acme"' in metrics and "spoofed" not in metrics
    tenants = httpx.get(f"{gw.url}/admin/top-tenants").json()["data"]
    assert "spoofed" not in [row["tenant"] for row in tenants]


def test_the_key_decides_the_tenant_and_is_never_forwarded(keyed: tuple[LiveGateway, str, Path]) -> None:
    gw, key, _ = keyed
    spoof = {"Authorization": f"Bearer {key}", "X-Tenant-Id": "someone-else"}
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "echo-model"}, headers=spoof)
    assert r.status_code == 200
    seen = r.json()["echo"]["headers"]
    assert key not in json.dumps(seen) and "X-Tenant-Id" not in seen
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["tenant_id"] == "acme" and event["api_key_id"]
    assert key not in json.dumps(event, default=str)
    twice = {"Authorization": f"bearer {key}", "X-Meterway-Key": key}  # an SDK's key and a default header
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "echo-model"}, headers=twice)
    assert r.status_code == 200 and key not in json.dumps(r.json()["echo"]["headers"])


def test_revoked_keys_are_refused(keyed: tuple[LiveGateway, str, Path]) -> None:
    gw, key, config = keyed
    listing = subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "list", "--config", str(config)],
                             capture_output=True, text=True, check=True, cwd=REPO).stdout  # fmt: skip
    key_id = listing.splitlines()[1].split()[0]
    assert key not in listing
    subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "revoke", key_id, "--config", str(config)],
                   check=True, cwd=REPO, capture_output=True)  # fmt: skip
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"x-api-key": key, "X-Tenant-Id": "other"})
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    event = gw.event(r.headers["x-meterway-request-id"])  # who still uses the revoked key stays on record
    assert (event["api_key_id"], event["tenant_id"], event["error_type"]) == (key_id, "acme", "unauthorized")


def test_a_key_that_would_expire_in_the_past_is_refused(keyed: tuple[LiveGateway, str, Path]) -> None:
    gw, _, config = keyed
    out = keys_create(config, "acme", "--expires", "2020-01-01")
    assert out.returncode == 2 and out.stdout == ""
    past = "expires_at 2020-01-01T00:00:00+00:00 is already past: the key could never be used"
    assert out.stderr.strip() == f"error: {past}"
    r = httpx.post(f"{gw.url}/admin/keys", json={"tenant": "acme", "expires_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 400 and "is already past" in r.json()["error"]["message"]


def test_a_key_for_a_provider_that_is_not_configured_is_refused(keyed: tuple[LiveGateway, str, Path]) -> None:
    gw, _, config = keyed
    out = keys_create(config, "acme", "--providers", "up,openai")
    unknown = "unknown provider(s) 'openai' in allowed_providers: the configured providers are echo, up"
    assert (out.returncode, out.stdout, out.stderr.strip()) == (2, "", f"error: {unknown}")
    r = httpx.post(f"{gw.url}/admin/keys", json={"tenant": "acme", "allowed_providers": ["echo", "openai"]})
    assert r.status_code == 400 and r.json()["error"]["message"] == unknown
    r = httpx.post(f"{gw.url}/admin/keys", json={"tenant": "acme", "allowed_providers": ["echo"]})
    assert r.status_code == 201 and r.json()["allowed_providers"] == ["echo"]


def test_a_key_request_with_a_field_it_does_not_know_is_refused(keyed: tuple[LiveGateway, str, Path]) -> None:
    """The command line's names (`models`, `expires`) would otherwise create a key without its limits."""
    gw, _, _ = keyed
    for body, expected in (
        ({"tenant": "r", "models": ["gpt-4o*"]}, "unknown field(s) 'models': expected tenant, name, user"),
        ({"tenant": "r", "expires": "2030-01-01"}, "unknown field(s) 'expires'"),
        ({"tenant": "r", "expires_at": 20300101}, "'expires_at' must be an ISO 8601 date or time"),
        ({"tenant": "r", "expires_at": "soon"}, "'expires_at' must be an ISO 8601 date or time"),
        ({"tenant": "r", "name": 5}, "'name' must be a string, got int"),
        ({"tenant": "r", "feature": {"a": 1}}, "'feature' must be a string, got dict"),
        ({"tenant": "r", "user": ["u"]}, "'user' must be a string, got list"),
    ):
        r = httpx.post(f"{gw.url}/admin/keys", json=body)
        assert r.status_code == 400 and expected in r.json()["error"]["message"], r.text
    r = httpx.post(f"{gw.url}/admin/keys", json={"tenant": "r", "allowed_models": ["gpt-4o*"]})
    assert r.status_code == 201 and r.json()["allowed_models"] == ["gpt-4o*"]


def test_refused_requests_keep_their_key_and_tenant_and_are_priced_at_zero(upstream: Upstream, tmp_path: Path) -> None:
    """A refusal is billed nothing, under the entry its model would have had, and a re-price agrees."""
    doc = governed(upstream, tmp_path, {"auth": {"require_keys": True}, "rate_limits": [{"tenant": "acme", "rpm": 1}]})
    config = write_config(tmp_path, doc)
    key, narrow = create_key(config, "acme"), create_key(config, "acme", "--models", "echo-model")
    listing = subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "list", "--config", str(config)],
                             capture_output=True, text=True, check=True, cwd=REPO).stdout  # fmt: skip
    ids = [line.split()[0] for line in listing.splitlines()[1:]]
    gw = LiveGateway.from_doc(tmp_path, doc).start()
    try:

        def send(credential: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
            return httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={**headers, "X-Tenant-Id": "x"})

        answers = [send(None), send(narrow), send(key), send(key)]
        assert [r.status_code for r in answers] == [401, 403, 200, 429]
        events = [gw.event(r.headers["x-meterway-request-id"]) for r in answers]
        assert [(e["tenant_id"], e["api_key_id"] in ids) for e in events] == [
            (None, False), ("acme", True), ("acme", True), ("acme", True),
        ]  # fmt: skip
        assert events[1]["api_key_id"] != events[2]["api_key_id"] == events[3]["api_key_id"]
        for event in (events[0], events[1], events[3]):
            assert event["pricing_status"] == "priced" and event["price_id"].startswith("openai/gpt-4o-mini@")
            assert event["total_cost"] == 0 and event["input_tokens"] == 0 and event["usage_source"] == "none"
        since = (events[0]["ts"] - timedelta(seconds=1)).isoformat()
        r = httpx.post(f"{gw.url}/admin/reprice", params={"since": since, "dry_run": "true"}, timeout=30)
        assert r.status_code == 200 and r.json()["examined"] == 4 and r.json()["changed"] == 0, r.text
    finally:
        gw.stop()


def test_64_concurrent_requests_cannot_overshoot_a_budget(upstream: Upstream, tmp_path: Path) -> None:
    limit = ONE_REQUEST * 10
    budget = {"name": "acme-daily", "tenant": "acme", "period": "day", "limit": str(limit), "currency": "USD",
              "hard": True}  # fmt: skip
    gw = LiveGateway.from_doc(tmp_path, governed(upstream, tmp_path, {"budgets": [budget]}, "slowchat")).start()
    try:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
                sends = [client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "acme"})
                         for _ in range(64)]  # fmt: skip
                return list(await asyncio.gather(*sends))

        responses = asyncio.run(burst())
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 429]
        assert len(ok) + len(refused) == 64 and 5 <= len(ok) <= 10
        assert all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
        assert (
            "acme-daily" in refused[0].json()["error"]["message"] and "resets" in refused[0].json()["error"]["message"]
        )
        spent = sum(Decimal(r.headers["x-meterway-cost"]) for r in ok)
        assert spent <= limit + ONE_REQUEST
        status = httpx.get(f"{gw.url}/admin/budgets").json()["budgets"][0]
        assert Decimal(status["spent"]) == spent and status["reserved"] == "0"
    finally:
        gw.stop()


def test_a_threshold_crossing_is_logged_in_words(
    upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = {"name": "acme-daily", "tenant": "acme", "period": "day", "limit": str(ONE_REQUEST * 2),
              "currency": "USD", "soft": [0.8]}  # fmt: skip
    gw = LiveGateway.from_doc(tmp_path, governed(upstream, tmp_path, {"budgets": [budget]})).start()
    url = f"{gw.url}/v1/chat/completions"
    try:
        with caplog.at_level("WARNING", logger="meterway.governance"):
            for _ in range(2):
                assert httpx.post(url, json=CHAT, headers={"X-Tenant-Id": "acme"}).is_success
            gw.flush()
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("budget threshold: ")]
        assert lines and "acme-daily" in lines[0] and "bound method" not in lines[0], lines
    finally:
        gw.stop()


def test_spend_the_budget_state_missed_before_a_crash_is_charged_at_the_next_start(
    upstream: Upstream, tmp_path: Path
) -> None:
    """budgets.json is saved about once a second; the events of requests that ended after its last save
    survive a crash in the journal, and the next start charges them from there (once)."""
    budget = {"name": "acme-daily", "tenant": "acme", "period": "day", "limit": "1", "currency": "USD"}
    doc = governed(upstream, tmp_path, {"budgets": [budget]})
    state = tmp_path / "budgets.json"

    def spent_after_start() -> Decimal:
        gw = LiveGateway.from_doc(tmp_path, doc).start()
        try:
            return Decimal(httpx.get(f"{gw.url}/admin/budgets").json()["budgets"][0]["spent"])
        finally:
            gw.stop()

    gw = LiveGateway.from_doc(tmp_path, doc).start()
    try:
        before = json.loads(state.read_text()) if state.exists() else None
        for _ in range(3):
            assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "acme"}).is_success
        gw.flush()
    finally:
        gw.stop()
    assert Decimal(json.loads(state.read_text())["spend"][0]["spent"]) == 3 * ONE_REQUEST
    # as if the process had died right after a save taken before these requests ended
    saved = json.loads(state.read_text())
    saved["spend"][0]["spent"] = "0"
    saved["saved_at"] = (before or {}).get("saved_at") or "2000-01-01T00:00:00+00:00"
    state.write_text(json.dumps(saved))
    assert spent_after_start() == 3 * ONE_REQUEST
    assert spent_after_start() == 3 * ONE_REQUEST, "a clean stop saves the state: nothing is charged twice"
    state.unlink()  # as if the first process had died before its first save
    assert spent_after_start() == 3 * ONE_REQUEST, "with no saved state, the period's stored requests count"
    assert spent_after_start() == 3 * ONE_REQUEST


def test_rate_limit_answers_429_with_retry_after(upstream: Upstream, tmp_path: Path) -> None:
    limits = {"rate_limits": [{"tenant": "acme", "rpm": 3}]}
    gw = LiveGateway.from_doc(tmp_path, governed(upstream, tmp_path, limits)).start()
    try:
        codes = [httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "acme"})
                 for _ in range(4)]  # fmt: skip
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        assert codes[-1].json()["error"]["code"] == "rate_limited" and int(codes[-1].headers["retry-after"]) >= 1
        other = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "globex"})
        assert other.status_code == 200
        assert gw.event(codes[-1].headers["x-meterway-request-id"])["error_type"] == "rate_limited"
    finally:
        gw.stop()


def test_a_hard_budget_refuses_a_model_it_cannot_price(upstream: Upstream, tmp_path: Path) -> None:
    """An unpriced request's cost is unknown (NULL, never zero): a hard budget could not bound it."""
    budgets = [
        {"name": "acme-hard", "tenant": "acme", "period": "day", "limit": "1", "currency": "USD", "hard": True},
        {"name": "globex-soft", "tenant": "globex", "period": "day", "limit": "1", "currency": "USD"},
    ]
    gw = LiveGateway.from_doc(tmp_path, governed(upstream, tmp_path, {"budgets": budgets})).start()
    try:
        unpriced = {**CHAT, "model": "echo/not-in-the-book"}
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=unpriced, headers={"X-Tenant-Id": "acme"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "unpriced_model"
        assert "'not-in-the-book'" in r.json()["error"]["message"] and "'acme-hard'" in r.json()["error"]["message"]
        assert gw.event(r.headers["x-meterway-request-id"])["error_type"] == "unpriced_model"
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=unpriced, headers={"X-Tenant-Id": "globex"})
        assert r.status_code == 200, "a soft budget only notifies"
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Tenant-Id": "acme"}).is_success
    finally:
        gw.stop()


def claude_under_a_hard_budget(
    upstream: Upstream, tmp_path: Path, script: str, limit: str
) -> tuple[LiveGateway, anthropic.Anthropic]:
    """A started gateway whose every request is under one hard daily budget of `limit` USD, with an
    Anthropic provider at /claude answered by `script`, and an Anthropic SDK client of it."""
    budget = {"name": "all-hard", "period": "day", "limit": limit, "currency": "USD", "hard": True}
    doc = governed(upstream, tmp_path, {"budgets": [budget]})
    add_claude(doc, upstream.script_url(script))
    gw = LiveGateway.from_doc(tmp_path, doc).start()
    return gw, anthropic.Anthropic(base_url=f"{gw.url}/claude", api_key="sk-ant-test", max_retries=0)


def test_a_hard_budget_lets_through_what_runs_no_model_and_a_body_that_is_not_an_object_is_a_400(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Listing models or reading a batch has no cost to bound; refusing it as unpriced broke SDK calls."""
    gw, client = claude_under_a_hard_budget(upstream, tmp_path, "echo", "1")
    try:
        listed = client.models.with_raw_response.list()
        assert listed.status_code == 200
        assert gw.event(listed.headers["x-meterway-request-id"])["error_type"] is None
        r = httpx.post(f"{gw.url}/claude/v1/messages", content=b"[1, 2]", headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"] == {
            "type": "invalid_request_error", "code": "invalid_json",
            "message": "request body must be a JSON object, got a JSON array",
        }  # fmt: skip
        assert gw.event(r.headers["x-meterway-request-id"])["status_code"] == 400
        r = httpx.post(f"{gw.url}/claude/v1/messages/batches", json={"requests": []})  # names no model: unbounded
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    finally:
        gw.stop()


def test_counting_tokens_is_not_billed_nor_held_against_a_hard_budget(upstream: Upstream, tmp_path: Path) -> None:
    """Anthropic does not bill messages.count_tokens: it was estimated as a prompt and charged, and a budget
    too small for one message refused it."""

    async def counted(request: web.Request) -> web.StreamResponse:
        return web.json_response({"input_tokens": 14})

    upstream.scripts["counted"] = counted
    gw, client = claude_under_a_hard_budget(upstream, tmp_path, "counted", "0.000000001")
    try:
        counted_reply = client.messages.with_raw_response.count_tokens(
            model="claude-opus-4-5", messages=[{"role": "user", "content": "How many tokens is this prompt?"}]
        )
        assert counted_reply.parse().input_tokens == 14
        event = gw.event(counted_reply.headers["x-meterway-request-id"])
        assert (event["endpoint"], event["usage_source"]) == ("anthropic.count_tokens", "none")
        assert event["input_tokens"] == 0
        assert not Decimal(event["total_cost"] or 0)
        assert Decimal(httpx.get(f"{gw.url}/admin/budgets").json()["budgets"][0]["spent"]) == 0
    finally:
        gw.stop()


def test_a_budget_on_a_models_alias_applies_to_requests_for_it(upstream: Upstream, tmp_path: Path) -> None:
    budget = {"name": "mini-hard", "model": "mini", "period": "day", "limit": str(ONE_REQUEST * 2), "currency": "USD",
              "hard": True}  # fmt: skip
    doc = governed(upstream, tmp_path, {"budgets": [budget]})
    doc["models"] = [*doc["models"], {"name": "mini", "provider": "up", "model": "gpt-4o-mini"}]  # type: ignore[list-item]
    gw = LiveGateway.from_doc(tmp_path, doc).start()
    try:
        codes = [httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "mini"}).status_code
                 for _ in range(4)]  # fmt: skip
        assert codes[0] == 200 and codes[-1] == 429
        assert Decimal(httpx.get(f"{gw.url}/admin/budgets").json()["budgets"][0]["spent"]) > 0
    finally:
        gw.stop()


def test_a_budget_on_a_provider_that_is_not_configured_is_refused_at_start(upstream: Upstream, tmp_path: Path) -> None:
    budget = {"name": "typo", "provider": "upp", "period": "day", "limit": "1", "currency": "USD", "hard": True}
    config = write_config(tmp_path, governed(upstream, tmp_path, {"budgets": [budget]}))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert "budgets: 'typo' names provider 'upp', which is not configured (providers: echo, up)" in out.stderr


def test_a_budget_refusal_tells_sdks_not_to_retry(upstream: Upstream, tmp_path: Path) -> None:
    """A hard budget's 429 lasts until the period resets, hours away: the Anthropic SDK would sleep that long
    on retry-after. `x-should-retry: false` makes both SDKs raise at once, the reset time in the message."""
    budget = {"name": "tiny", "period": "day", "limit": "0.000000001", "currency": "USD", "hard": True}
    doc = governed(upstream, tmp_path, {"budgets": [budget]})
    add_claude(doc, upstream.script_url("chat"))
    doc["models"].append({"name": "claude-opus-4-5", "provider": "claude"})  # type: ignore[attr-defined]
    gw = LiveGateway.from_doc(tmp_path, doc).start()
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
        assert r.status_code == 429 and r.headers["x-should-retry"] == "false" and int(r.headers["retry-after"]) > 0
        client = anthropic.Anthropic(base_url=f"{gw.url}/claude", api_key="sk-ant-test", max_retries=2)
        with pytest.raises(anthropic.RateLimitError) as info:
            client.messages.create(model="claude-opus-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        assert "tiny" in info.value.message
        assert len(gw.events("error_type = 'budget_exceeded'")) == 2  # one try each: neither SDK retried
    finally:
        gw.stop()
