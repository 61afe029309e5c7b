"""The proxy end to end: official SDKs and raw HTTP through a live gateway to a real local upstream."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest

from gateway.bodies import broken_stream
from gateway.demo_run import demo_config
from gateway.providers.anthropic import AnthropicKind
from gateway.providers.ollama import OllamaKind
from gateway.usage import Usage
from tests.gateway import scripts
from tests.support.gateway import LiveGateway
from tests.support.upstream import Upstream

SECRET = "sk-upstream-secret-0123456789"


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    upstream.scripts.update(scripts.ALL)
    providers = {
        name: {"kind": "openai", "base_url": upstream.script_url(name), "api_key": SECRET, "price_as": "openai"}
        for name in scripts.ALL
    }
    providers["hang"]["timeout"] = 0.5
    providers["unanswered"] = {**providers["hang"], "timeout": 60}
    providers["echonokey"] = {"kind": "openai", "base_url": upstream.script_url("echo")}
    providers["refused"] = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    providers["ndjsonreset"] = {"kind": "ollama", "base_url": upstream.script_url("ndjsonreset")}
    doc = {
        "server": {"max_body_bytes": 65536},
        "providers": providers,
        "models": [
            {"name": "gpt-4o-mini", "provider": "chat"},
            {"name": "mini", "provider": "chat", "model": "gpt-4o-mini"},
            {"name": "glob-*", "provider": "echo"},
            {"name": "nousage-model", "provider": "nousage"},
            {"name": "dated-mini", "provider": "dated", "model": "gpt-4o-mini"},
            {"name": "broken-mini", "provider": "reset", "model": "gpt-4o-mini"},
        ],
    }
    live = LiveGateway.from_doc(tmp_path_factory.mktemp("gw"), doc).start()
    yield live
    live.stop()


def post(gw: LiveGateway, path: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}{path}", json=body, headers=headers, timeout=30)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}


def test_sdk_nonstream_is_metered_priced_and_tagged(gw: LiveGateway, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}],
        extra_headers={"X-Tenant-Id": "acme", "X-Feature": "chat", "X-Meterway-Tags": "team=search,env=prod"},
    )  # fmt: skip
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hi there!"
    request_id = raw.headers["x-meterway-request-id"]
    event = gw.event(request_id)
    assert (event["input_tokens"], event["output_tokens"], event["total_tokens"]) == (12, 3, 15)
    assert event["usage_source"] == "provider"
    assert event["model"] == "gpt-4o-mini-2024-07-18" and event["model_requested"] == "gpt-4o-mini"
    assert event["endpoint"] == "chat.completions" and event["provider"] == "chat" and event["stream"] is False
    assert event["tenant_id"] == "acme" and event["feature"] == "chat"
    assert json.loads(event["tags"]) == {"team": "search", "env": "prod"}
    assert event["pricing_status"] == "priced" and event["currency"] == "USD"
    # gpt-4o-mini: $0.15 input, $0.60 output per 1M tokens
    assert event["total_cost"] == Decimal("0.0000036")
    assert Decimal(raw.headers["x-meterway-cost"]) == event["cost_reporting"] == Decimal("0.0000036")


def test_more_cached_tokens_than_input_are_recorded_as_all_of_the_input(gw: LiveGateway) -> None:
    r = post(gw, "/overcached/chat/completions", CHAT)
    event = gw.event(r.headers["x-meterway-request-id"])
    tokens = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "usage_source")
    assert tuple(event[k] for k in tokens) == (10, 10, 0, 2, "provider")
    # gpt-4o-mini: $0.075 cached input, $0.60 output per 1M tokens; nothing left uncached
    assert (event["input_cost"], event["cached_input_cost"]) == (0, Decimal("0.00000075"))
    assert event["total_cost"] == Decimal("0.00000195") == Decimal(r.headers["x-meterway-cost"])


def test_usage_parts_are_cut_to_their_wholes_reads_first() -> None:
    usage = Usage(input_tokens=10, cached_input_tokens=6, cache_write_tokens=8, output_tokens=2, reasoning_tokens=9,
                  cache_write_5m_tokens=3, cache_write_1h_tokens=5)  # fmt: skip
    assert usage.clamp_parts()
    assert (usage.cached_input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens,
            usage.cache_write_5m_tokens, usage.reasoning_tokens) == (6, 4, 4, 0, 2)  # fmt: skip
    assert not Usage(input_tokens=10, cached_input_tokens=6, cache_write_tokens=4).clamp_parts()


def test_sdk_stream_without_include_usage_hides_injected_chunk(
    gw: LiveGateway, client: openai.OpenAI, upstream: Upstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], stream=True
    )
    chunks = list(raw.parse())
    assert all(c.choices for c in chunks), "the usage-only chunk the gateway asked for must not reach the client"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hi there!"
    sent = [r for r in upstream.requests if r.path.startswith("/script/chat/")][-1].json()
    assert sent["stream_options"] == {"include_usage": True}
    event = gw.event(raw.headers["x-meterway-request-id"])
    assert (event["input_tokens"], event["output_tokens"], event["usage_source"]) == (12, 3, "provider")
    assert event["stream"] is True and event["ttft_ms"] is not None and event["ttft_ms"] <= event["duration_ms"]


def test_sdk_stream_with_include_usage_keeps_the_usage_chunk(gw: LiveGateway, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 15


def test_stream_bytes_are_identical_to_upstream_when_client_asked_for_usage(gw: LiveGateway) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    direct = httpx.post(gw.app.gateway.config.providers["chat"].base_url + "/chat/completions", json=body)
    via = post(gw, "/v1/chat/completions", body)
    assert via.status_code == 200 and via.content == direct.content
    assert via.headers["content-type"].startswith("text/event-stream")


def test_stream_without_provider_usage_is_estimated(gw: LiveGateway) -> None:
    r = post(gw, "/v1/chat/completions", {**CHAT, "model": "nousage-model", "stream": True})
    assert r.status_code == 200 and b"[DONE]" in r.content
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["usage_source"] == "estimated"
    assert event["output_tokens"] == 6  # "Hello world, how are you" in cl100k_base
    assert event["input_tokens"] > 0 and event["error_type"] is None


def test_client_disconnect_mid_stream_still_records_an_event(gw: LiveGateway) -> None:
    with httpx.Client(timeout=30) as c, c.stream("POST", f"{gw.url}/slow/chat/completions",
                                                 json={**CHAT, "stream": True}) as r:  # fmt: skip
        request_id = r.headers["x-meterway-request-id"]
        seen = b""
        for piece in r.iter_raw():
            seen += piece
            if seen.count(b"tick") >= 3:
                break
    event = gw.event(request_id)
    assert event["error_type"] == "client_disconnect"
    assert event["usage_source"] == "estimated" and event["output_tokens"] >= 3


def test_a_client_leaving_before_the_provider_answers_is_billed_its_prompt(gw: LiveGateway) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gw.url}/unanswered/chat/completions", json=CHAT, timeout=httpx.Timeout(30, read=0.5))
    [event] = gw.stored_events("provider = 'unanswered'")  # once the gateway's watcher has seen the disconnect
    assert event["status_code"] == 499 and event["error_type"] == "client_disconnect"
    assert event["usage_source"] == "estimated" and event["input_tokens"] > 0 and event["output_tokens"] == 0


def test_upstream_reset_mid_stream(gw: LiveGateway) -> None:
    r = post(gw, "/reset/chat/completions", {**CHAT, "stream": True})
    assert b"partial" in r.content
    last = r.content.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]  # the stream ends in an error, not as if complete
    assert last.startswith(b"data: ") and b"[DONE]" not in r.content
    error = json.loads(last[len(b"data: ") :])["error"]
    assert error["code"] == "upstream_stream_broken" and "provider 'reset' broke off" in error["message"]
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "stream_error"
    assert event["usage_source"] == "estimated" and event["output_tokens"] >= 2


def test_an_ndjson_stream_its_upstream_broke_off_ends_in_an_error_line(gw: LiveGateway) -> None:
    """Ollama's clients raise on a line holding `error`; the line cut short is ended before it."""
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    r = post(gw, "/ndjsonreset/api/chat", chat)
    lines = r.content.decode().splitlines()
    assert json.loads(lines[0])["message"]["content"] == "partial" and lines[1] == '{"model": "llama3.2", "mess'
    assert len(lines) == 3 and "provider 'ndjsonreset' broke off" in json.loads(lines[2])["error"]
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "stream_error" and event["model_requested"] == "llama3.2"


def test_a_stream_its_upstream_broke_off_raises_in_the_sdk(gw: LiveGateway, client: openai.OpenAI) -> None:
    received = ""
    with pytest.raises(openai.APIError, match="the answer is incomplete"):
        for chunk in client.chat.completions.create(model="broken-mini", messages=CHAT["messages"], stream=True):
            received += "".join(choice.delta.content or "" for choice in chunk.choices)
    assert received == "partial answer"


def test_upstream_timeout_is_504_in_openai_format(gw: LiveGateway, client: openai.OpenAI) -> None:
    r = post(gw, "/hang/chat/completions", CHAT)
    assert r.status_code == 504
    err = r.json()["error"]
    assert err["code"] == "upstream_timeout" and "hang" in err["message"]
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["status_code"] == 504 and event["error_type"] == "timeout"


def test_connect_refused_is_502(gw: LiveGateway) -> None:
    r = post(gw, "/refused/chat/completions", CHAT)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_unreachable"
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "upstream_error" and event["usage_source"] == "none"


def test_upstream_5xx_is_passed_through_and_recorded(gw: LiveGateway, client: openai.OpenAI) -> None:
    r = post(gw, "/error500/chat/completions", CHAT)
    assert r.status_code == 500 and r.json()["error"]["message"] == "The server had an error"
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "upstream_error" and event["error_message"] == "The server had an error"
    assert event["usage_source"] == "none" and event["input_tokens"] == 0


def test_malformed_sse_is_relayed_untouched(gw: LiveGateway) -> None:
    r = post(gw, "/malformed/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    assert r.content.startswith(b"data: {not json at all\n\n") and r.content.endswith(b"data: [DONE]\n\n")
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["usage_source"] == "estimated" and event["status_code"] == 200


def test_error_inside_a_200_stream_after_content(gw: LiveGateway) -> None:
    r = post(gw, "/errorafter/chat/completions", {**CHAT, "stream": True})
    assert b"some text" in r.content
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "upstream_error" and "overloaded" in event["error_message"]


def test_an_error_instead_of_a_completion_in_a_200_is_billed_nothing(gw: LiveGateway) -> None:
    r = post(gw, "/error200/chat/completions", CHAT)
    assert r.status_code == 200 and r.json()["error"]["message"] == "the engine is overloaded"
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "upstream_error" and "overloaded" in event["error_message"]
    assert event["usage_source"] == "none" and event["input_tokens"] == 0 and event["total_cost"] == 0


def test_an_html_page_instead_of_a_completion_is_an_error_billed_nothing(gw: LiveGateway) -> None:
    r = post(gw, "/html/chat/completions", CHAT)
    assert r.status_code == 200 and "Please sign in" in r.text, "relayed as it came"
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "upstream_error" and "not JSON" in event["error_message"]
    assert event["usage_source"] == "none" and event["total_cost"] == 0


def test_unknown_model_is_404_model_not_found(gw: LiveGateway, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found" and "no-such-model" in info.value.message
    event = gw.event(info.value.response.headers["x-meterway-request-id"])
    assert event["status_code"] == 404 and event["error_type"] == "model_not_found"


def test_malformed_json_and_missing_model_are_400(gw: LiveGateway) -> None:
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=b'"hi"', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "request body must be a JSON object, got a JSON string"
    r = post(gw, "/v1/chat/completions", {"messages": []})
    assert r.status_code == 400 and "model" in r.json()["error"]["message"]
    gw.event(r.headers["x-meterway-request-id"])


def test_other_methods_on_the_routed_paths_are_405(gw: LiveGateway) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = httpx.request(method, f"{gw.url}/v1/chat/completions")
        assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
        error = r.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert f"{method} /v1/chat/completions is not served" in error["message"]
    assert gw.event(r.headers["x-meterway-request-id"])["status_code"] == 405


def test_body_too_large_is_413(gw: LiveGateway) -> None:
    r = post(gw, "/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "x" * 70000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_unknown_provider_route_is_404(gw: LiveGateway) -> None:
    r = post(gw, "/nope/chat/completions", CHAT)
    assert r.status_code == 404 and "x-meterway-request-id" in r.headers


def test_credentials_injected_and_never_leaked(gw: LiveGateway) -> None:
    r = post(gw, "/v1/chat/completions", {**CHAT, "model": "glob-anything"}, Authorization="Bearer sk-client-key")
    seen = r.json()["echo"]["headers"]
    assert seen["Authorization"] == f"Bearer {SECRET}"
    event = gw.event(r.headers["x-meterway-request-id"])
    assert SECRET not in json.dumps(event, default=str)
    assert SECRET not in "".join(f"{k}: {v}" for k, v in r.headers.items())


def test_client_credential_passes_through_without_a_configured_key(gw: LiveGateway) -> None:
    r = post(gw, "/echonokey/chat/completions", CHAT, Authorization="Bearer sk-client-own")
    assert r.json()["echo"]["headers"]["Authorization"] == "Bearer sk-client-own"


def test_attribution_headers_are_not_forwarded_and_user_falls_back_to_body(gw: LiveGateway) -> None:
    r = post(gw, "/echo/chat/completions", {**CHAT, "user": "alice"},
             **{"X-Tenant-Id": "t1", "X-Session-Id": "s1", "X-User-Id": "", "Connection": "keep-alive"})  # fmt: skip
    seen = {k.lower() for k in r.json()["echo"]["headers"]}
    assert not seen & {"x-tenant-id", "x-session-id", "x-user-id", "x-meterway-tags"}
    event = gw.event(r.headers["x-meterway-request-id"])
    assert (event["tenant_id"], event["session_id"], event["user_id"]) == ("t1", "s1", "alice")


def test_a_raw_json_body_sent_as_a_form_is_still_metered_by_its_model(gw: LiveGateway) -> None:
    """curl's default content type on a JSON body (how Ollama's own documentation calls its API)."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = httpx.post(f"{gw.url}/chat/chat/completions", content=json.dumps(CHAT).encode(), headers=form)
    assert r.status_code == 200
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["model_requested"] == "gpt-4o-mini" and event["total_cost"] == Decimal("0.0000036")
    r = httpx.post(f"{gw.url}/echo/chat/completions", content=b"a=1&b={x}", headers=form)
    assert r.status_code == 200 and gw.event(r.headers["x-meterway-request-id"])["model_requested"] is None


def test_alias_rewrite_and_provider_prefix(gw: LiveGateway, upstream: Upstream) -> None:
    post(gw, "/v1/chat/completions", {**CHAT, "model": "mini"})
    assert upstream.requests[-1].json()["model"] == "gpt-4o-mini"
    r = post(gw, "/v1/chat/completions", {**CHAT, "model": "echo/some-model"})
    assert r.status_code == 200 and upstream.requests[-1].json()["model"] == "some-model"


def test_a_reprice_on_an_unchanged_book_changes_nothing(gw: LiveGateway) -> None:
    """The upstream reports a model the book does not know: the gateway prices the model it sent upstream
    (an alias's target, a prefixed name without its prefix), and so does a re-price."""
    since = httpx.get(f"{gw.url}/healthz").headers["date"]
    ids = [post(gw, "/v1/chat/completions", {**CHAT, "model": model}).headers["x-meterway-request-id"]
           for model in ("dated-mini", "dated/gpt-4o-mini")]  # fmt: skip
    for request_id in ids:
        event = gw.event(request_id)
        assert event["model"] == "gpt-4o-mini-2099-01-01"
        assert event["pricing_status"] == "priced" and event["price_id"].startswith("openai/gpt-4o-mini@")
        assert event["total_cost"] == Decimal("0.0000036")
    r = httpx.post(f"{gw.url}/admin/reprice", params={"since": _iso(since), "dry_run": "true"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["examined"] >= 2 and r.json()["changed"] == 0, r.json()["examples"]


def _iso(http_date: str) -> str:
    from email.utils import parsedate_to_datetime

    return (parsedate_to_datetime(http_date) - timedelta(seconds=1)).isoformat()


def test_models_list_and_health(gw: LiveGateway, client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "mini", "nousage-model"} <= ids and "glob-*" not in ids
    assert client.models.retrieve("mini").owned_by == "chat"
    assert client.models.retrieve("glob-anything").owned_by == "echo"
    assert client.models.retrieve("echo/some-model").id == "echo/some-model"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"
    for path in ("/healthz", "/readyz", "/no/such/route"):
        r = httpx.get(f"{gw.url}{path}")
        assert "x-meterway-request-id" in r.headers
    assert httpx.get(f"{gw.url}/readyz").json()["ready"] is True


def test_written_events_survive_in_the_duckdb_file(gw: LiveGateway, tmp_path: Path) -> None:
    r = post(gw, "/v1/chat/completions", CHAT)
    gw.event(r.headers["x-meterway-request-id"])
    assert gw.config.storage.path.exists()


def test_a_failure_inside_the_gateway_still_answers_and_records(
    gw: LiveGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("pricing exploded")

    monkeypatch.setattr(gw.app.gateway.proxy.pricer, "price_event", broken)
    r = post(gw, "/v1/chat/completions", CHAT)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    monkeypatch.undo()
    event = gw.event(r.headers["x-meterway-request-id"])
    assert event["error_type"] == "internal_error" and event["provider"] == "chat"


def test_a_broken_stream_ends_in_the_error_event_of_the_api_called() -> None:
    sse = SimpleNamespace(content_type="text/event-stream")
    ndjson = SimpleNamespace(content_type="application/x-ndjson")
    anthropic = broken_stream(AnthropicKind(), sse, "provider 'a' broke off")  # type: ignore[arg-type]
    event, data = anthropic.strip().split(b"\n")
    assert event == b"event: error" and json.loads(data[len(b"data: ") :])["type"] == "error"
    other = SimpleNamespace(content_type="application/octet-stream")
    assert broken_stream(AnthropicKind(), other, "provider 'a' broke off") == b""  # type: ignore[arg-type]
    whole_line = broken_stream(OllamaKind(), ndjson, "provider 'o' broke off", b'{"done": false}\n')  # type: ignore[arg-type]
    assert whole_line.endswith(b"\n") and json.loads(whole_line)["error"].startswith("provider 'o' broke off")


def test_a_raw_head_request_answers_the_upstream_length(gw: LiveGateway, upstream: Upstream) -> None:
    get = httpx.get(f"{gw.url}/echo/models")
    head = httpx.head(f"{gw.url}/echo/models")
    assert upstream.requests[-1].method == "HEAD"
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content)) != "0"


def test_readiness_turns_off_while_journal_writes_fail_and_back_on_after(tmp_path: Path) -> None:
    """SPEC: /readyz checks that storage is writable. Events that cannot be journaled are dropped (and
    counted), so a gateway in that state must say it is not ready until a write succeeds again."""
    live = LiveGateway(demo_config(tmp_path / "events.duckdb", 0)).start()
    try:
        writer = live.app.gateway.writer
        journal_fd = writer._fd
        read_end, write_end = os.pipe()
        os.close(read_end)  # writes to a pipe nobody reads fail (EPIPE), like a journal on a lost disk
        writer._fd = write_end
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{live.url}/v1/chat/completions", json=chat, timeout=30).status_code == 200
        r = httpx.get(f"{live.url}/readyz")
        assert r.status_code == 503 and r.json()["checks"]["journal"] is False
        assert httpx.get(f"{live.url}/admin/storage").json()["writer"]["dropped"] == 1
        writer._fd = journal_fd
        os.close(write_end)
        assert httpx.post(f"{live.url}/v1/chat/completions", json=chat, timeout=30).status_code == 200
        r = httpx.get(f"{live.url}/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"price_book": True, "storage": True, "journal": True}
    finally:
        live.stop()
