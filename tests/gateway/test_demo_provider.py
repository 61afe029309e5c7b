"""The built-in demo provider through a live gateway, with the official SDK: every API it answers, metered."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from tests.support.gateway import LiveGateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    doc = {
        "providers": {"demo": {"kind": "demo", "base_url": "http://demo.invalid/v1", "price_as": "openai"}},
        "models": [{"name": "demo", "provider": "demo", "model": "gpt-4o-mini"}],
    }
    live = LiveGateway.from_doc(tmp_path_factory.mktemp("demo"), doc).start()
    yield live
    live.stop()


def test_the_responses_api_answers_in_its_own_shape(gw: LiveGateway, client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="demo", input="How do I reset my password?")
    response = raw.parse()
    assert response.object == "response" and response.output_text.startswith("To reset your password")
    assert response.usage is not None and response.usage.output_tokens > 10
    event = gw.event(raw.headers["x-meterway-request-id"])
    assert (event["endpoint"], event["usage_source"], event["model"]) == ("responses", "provider", "gpt-4o-mini")
    usage = response.usage
    assert (event["input_tokens"], event["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert event["total_cost"] > Decimal(0)


def test_a_streamed_response_ends_with_its_usage(gw: LiveGateway, client: openai.OpenAI) -> None:
    with client.responses.with_streaming_response.create(
        model="demo", input="Summarize the meeting notes", max_output_tokens=5, stream=True
    ) as raw:
        request_id = raw.headers["x-meterway-request-id"]
        events = list(raw.parse())
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    completed = events[-1]
    assert events[0].type == "response.created" and completed.type == "response.completed"
    assert len(deltas) == 5 and completed.response.output_text == "".join(deltas)
    assert completed.response.usage is not None
    event = gw.event(request_id)
    assert event["stream"] is True and event["usage_source"] == "provider"
    assert event["output_tokens"] == completed.response.usage.output_tokens
