"""Every recorded provider response, served by a real local upstream and sent through a live gateway.

The client must receive the recorded body byte for byte, and the stored event must carry the
token fields, usage source and error flag the transcript's `expected_event` names.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.gateway.providers.test_wire_fixtures import TOKEN_FIELDS, WIRE, kinds_for, load, request_headers, url_path
from tests.support.gateway import LiveGateway
from tests.support.upstream import Upstream

NAMES = sorted(p.stem for p in WIRE.glob("*.json"))


def provider_name(name: str) -> str:
    return "fx-" + name.replace("_", "-")


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    providers = {}
    for name in NAMES:
        fixture = load(f"{name}.json")
        providers[provider_name(name)] = {"kind": kinds_for(fixture)[0], "base_url": upstream.fixture_url(name)}
    flex = upstream.fixture_url("openai_responses_stream_flex_reasoning")
    providers["priced-openai"] = {"kind": "openai", "base_url": flex, "price_as": "openai"}
    live = LiveGateway.from_doc(tmp_path_factory.mktemp("wire"), {"providers": providers}).start()
    yield live
    live.stop()


@pytest.mark.parametrize("name", NAMES)
def test_recorded_response_through_the_gateway(gw: LiveGateway, name: str) -> None:
    fixture = load(f"{name}.json")
    query = urlsplit(fixture["url"].split(" ")[0]).query
    headers = dict(request_headers(fixture))
    headers["content-type"] = "application/json"
    if fixture["provider"] == "dashscope" and fixture["stream"]:
        headers["X-DashScope-SSE"] = "enable"
    body = orjson.dumps(fixture["request"]) if fixture.get("request") else b"{}"
    url = f"{gw.url}/{provider_name(name)}/{url_path(fixture)}" + (f"?{query}" if query else "")
    r = httpx.request(fixture.get("method", "POST"), url, content=body, headers=headers, timeout=30)

    assert r.status_code == fixture["status"]
    assert r.content == fixture["body"].encode(), "the client must get the upstream's bytes unchanged"
    event = gw.event(r.headers["x-meterway-request-id"])
    expected = fixture["expected_event"]
    for field in TOKEN_FIELDS:
        if field in expected:
            assert event[field] == expected[field], field
    assert event["usage_source"] == expected["usage_source"]
    assert (event["error_type"] is not None) == expected["error"]
    assert event["status_code"] == fixture["status"] and event["provider"] == provider_name(name)
    assert event["stream"] == fixture["stream"]


def test_a_request_served_at_the_flex_tier_is_priced_at_the_flex_price(gw: LiveGateway) -> None:
    """The response's `service_tier` says which tier served it; the book's gpt-5 entry prices flex at
    0.625 input / 5 output per 1M tokens (standard: 1.25 / 10)."""
    fixture = load("openai_responses_stream_flex_reasoning.json")
    r = httpx.post(f"{gw.url}/priced-openai/v1/responses", json=fixture["request"], timeout=30)
    assert r.status_code == 200
    event = gw.event(r.headers["x-meterway-request-id"])
    assert (event["input_tokens"], event["output_tokens"], event["service_tier"]) == (53, 469, "flex")
    assert event["total_cost"] == Decimal("0.002378125")  # (53 x 0.625 + 469 x 5) / 1M
