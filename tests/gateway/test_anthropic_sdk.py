"""The official Anthropic SDK pointed at the gateway (`base_url=http://gateway/anthropic`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import anthropic
import httpx
import pytest

from tests.support.gateway import LiveGateway
from tests.support.upstream import Upstream

KEY = "sk-ant-upstream-0123456789"
# The SDK warns about retired model names; the recorded transcripts use them.
Sdk = Callable[[str], anthropic.Anthropic]
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    providers = {
        "anthropic": {"kind": "anthropic", "api_key": KEY,
                      "base_url": upstream.fixture_url("anthropic_messages_nonstream_cache_read_and_write")},
        "anthropic-stream": {"kind": "anthropic", "price_as": "anthropic",
                             "base_url": upstream.fixture_url("anthropic_messages_stream_extended_thinking")},
        "anthropic-bad": {"kind": "anthropic", "price_as": "anthropic",
                          "base_url": upstream.fixture_url("anthropic_messages_error_400_invalid_request")},
    }  # fmt: skip
    doc = {"providers": providers, "server": {"max_body_bytes": 65536}}
    live = LiveGateway.from_doc(tmp_path_factory.mktemp("anthropic"), doc).start()
    yield live
    live.stop()


@pytest.fixture
def sdk(gw: LiveGateway) -> Iterator[Callable[[str], anthropic.Anthropic]]:
    """A client per provider route; all closed after the test, so no connection outlives it."""
    clients: list[anthropic.Anthropic] = []

    def make(provider: str) -> anthropic.Anthropic:
        clients.append(anthropic.Anthropic(base_url=f"{gw.url}/{provider}", api_key="sk-ant-client", max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_messages_with_cache_read_and_write(gw: LiveGateway, upstream: Upstream, sdk: Sdk) -> None:
    raw = sdk("anthropic").messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Explain Python"}],
        metadata={"user_id": "user-42"}, extra_headers={"X-Tenant-Id": "acme"},
    )  # fmt: skip
    message = raw.parse()
    assert message.usage.cache_read_input_tokens == 1111
    seen = upstream.requests[-1]
    assert seen.headers["x-api-key"] == KEY and "anthropic-version" in seen.headers
    event = gw.event(raw.headers["x-meterway-request-id"])
    assert (event["input_tokens"], event["cached_input_tokens"], event["cache_write_tokens"]) == (1532, 1111, 418)
    assert event["endpoint"] == "anthropic.messages" and event["user_id"] == "user-42" and event["tenant_id"] == "acme"
    assert event["thinking"] is False
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 5-minute cache write, $15 output per 1M
    expected = Decimal(3) * 3 + Decimal("0.3") * 1111 + Decimal("3.75") * 418 + Decimal(15) * 33
    assert event["pricing_status"] == "priced" and event["total_cost"] == expected / 1_000_000
    assert Decimal(raw.headers["x-meterway-cost"]) == event["cost_reporting"]


def test_streamed_thinking_message(gw: LiveGateway, sdk: Sdk) -> None:
    with sdk("anthropic-stream").messages.stream(
        model="claude-sonnet-4-0", max_tokens=2048, messages=[{"role": "user", "content": "Think, then answer"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:  # fmt: skip
        final = stream.get_final_message()
        request_id = stream.response.headers["x-meterway-request-id"]
    assert final.usage.output_tokens == 282
    assert any(block.type == "thinking" for block in final.content)
    event = gw.event(request_id)
    assert (event["input_tokens"], event["output_tokens"], event["usage_source"]) == (43, 282, "provider")
    assert event["stream"] is True and event["pricing_status"] == "priced"
    assert event["thinking"] is True  # the mode it was priced in, kept for re-pricing


def test_upstream_error_reaches_the_sdk_in_anthropic_format(gw: LiveGateway, sdk: Sdk) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk("anthropic-bad").messages.create(
            model="claude-opus-4-6", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    event = gw.event(info.value.response.headers["x-meterway-request-id"])
    assert event["status_code"] == 400 and event["error_type"] == "upstream_error" and event["usage_source"] == "none"


def test_gateway_errors_on_the_anthropic_route_use_anthropic_format(gw: LiveGateway) -> None:
    r = httpx.post(f"{gw.url}/anthropic/v1/messages", content=b"{bad", headers={"content-type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in body["error"]["message"]
    big = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x" * 70000}]}
    r = httpx.post(f"{gw.url}/anthropic/v1/messages", json=big)
    assert r.status_code == 413 and r.json()["type"] == "error", r.text
    assert "exceeds the limit of 65536 bytes" in r.json()["error"]["message"]
