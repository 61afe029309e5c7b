"""The `anthropic` kind: Messages API usage with cache parts, message_delta revisions, error frames."""

from __future__ import annotations

import orjson
import pytest

from gateway.metering import Outcome, decide_usage
from gateway.providers.base import Call, GatewayError
from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import metered, provider, raw_call, run, sse

ANTHROPIC = KINDS["anthropic"]
SSE = "text/event-stream"


def start(**usage: object) -> tuple[str, dict[str, object]]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "usage": usage}
    return ("message_start", {"type": "message_start", "message": message})


def delta(text: str) -> tuple[str, dict[str, object]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def message_delta(**usage: object) -> tuple[str, dict[str, object]]:
    return ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage})


def messages_call() -> Call:
    return raw_call("anthropic", "v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 10})


@pytest.mark.parametrize("split", ["whole", "3", "random"])
def test_message_delta_revises_every_field_last_value_wins(split: str) -> None:
    wire = sse(
        start(input_tokens=5, cache_read_input_tokens=100, cache_creation_input_tokens=0, output_tokens=1),
        delta("Hi"),
        message_delta(output_tokens=4),
        message_delta(
            input_tokens=7,
            cache_read_input_tokens=90,
            cache_creation_input_tokens=30,
            cache_creation={"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
            output_tokens=9,
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    call = messages_call()
    meter = ANTHROPIC.new_meter(call, 200, SSE)
    relayed, report = run(meter, wire, split)
    assert relayed == wire
    u = report.usage
    assert u is not None
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens) == (127, 90, 30, 9)
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (10, 20)
    assert report.model == "claude-sonnet-4-5" and report.error is None
    assert meter.output_text() == "Hi"


def test_null_fields_in_message_delta_do_not_erase() -> None:
    wire = sse(start(input_tokens=11, output_tokens=1), message_delta(input_tokens=None, output_tokens=6))
    report = metered("anthropic", messages_call(), wire, ctype=SSE)
    assert report.usage is not None and (report.usage.input_tokens, report.usage.output_tokens) == (11, 6)


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_error_frame_after_content_bills_the_input_reported_and_estimates_the_output() -> None:
    call = messages_call()
    wire = sse(start(input_tokens=3, cache_read_input_tokens=40, output_tokens=1), delta("partial answer"),
               ("error", OVERLOADED), crlf=True)  # fmt: skip
    meter = ANTHROPIC.new_meter(call, 200, SSE)
    report = run(meter, wire, "5")[1]
    assert report.error == "Overloaded"
    assert report.usage is None, "message_start's output_tokens is a placeholder, not a report"
    usage, source = decide_usage(ANTHROPIC, call, meter, report, Outcome(200, "upstream_error", reached_upstream=True))
    assert source == "estimated"
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (43, 40, 2)


@pytest.mark.parametrize("ending", ["cut", "error before output"])
def test_a_stream_ending_before_message_delta_is_not_billed_at_message_start(ending: str) -> None:
    call = messages_call()
    frames = [start(input_tokens=43, output_tokens=1), ("ping", {"type": "ping"})]
    if ending == "cut":
        frames += [delta("The answer is forty-two, and here is why")]
        outcome = Outcome(200, "stream_error", reached_upstream=True)
    else:
        frames += [("error", OVERLOADED)]
        outcome = Outcome(200, "upstream_error", reached_upstream=True)
    meter = ANTHROPIC.new_meter(call, 200, SSE)
    report = run(meter, sse(*frames), "7")[1]
    usage, source = decide_usage(ANTHROPIC, call, meter, report, outcome)
    if ending == "cut":  # the input as reported, the output counted from the text relayed
        assert source == "estimated" and usage.input_tokens == 43 and usage.output_tokens == 10
    else:  # an error before any output: the provider refused it, nothing is billed
        assert source == "none" and usage.total_tokens == 0


def test_whole_message_usage_and_text() -> None:
    body = {
        "type": "message",
        "model": "claude-opus-4-1",
        "content": [{"type": "text", "text": "Hello"}],
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 10, "output_tokens": 2},
    }
    call = raw_call("anthropic", "v1/messages", {"model": "claude-opus-4-1", "max_tokens": 5})
    meter = ANTHROPIC.new_meter(call, 200, "application/json")
    report = run(meter, orjson.dumps(body, option=orjson.OPT_INDENT_2), "4")[1]
    assert report.usage is not None and (report.usage.input_tokens, report.usage.cached_input_tokens) == (13, 10)
    assert meter.output_text() == "Hello"


def test_credential_and_version_headers() -> None:
    prov = provider("anthropic", api_key="sk-ant-up")
    call = ANTHROPIC.shape_raw(prov, "POST", "v1/messages", {"model": "claude"})
    client = [("x-api-key", "client"), ("Authorization", "Bearer gw"), ("anthropic-version", "2024-01-01")]
    up = ANTHROPIC.upstream_request(call, "POST", "beta=true", client, b"{}")
    assert up.url == "https://up.example/v1/messages?beta=true"
    assert up.headers == [("anthropic-version", "2024-01-01"), ("x-api-key", "sk-ant-up")]
    up = ANTHROPIC.upstream_request(raw_call("anthropic", "v1/messages", {}), "POST", "", [("x-api-key", "c")], b"")
    assert up.headers == [("x-api-key", "c"), ("anthropic-version", "2023-06-01")]


def test_endpoints_thinking_and_openai_route() -> None:
    assert raw_call("anthropic", "v1/messages/count_tokens", {"model": "c"}).endpoint == "anthropic.count_tokens"
    body = {"model": "c", "thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert raw_call("anthropic", "v1/messages", body).thinking
    call = ANTHROPIC.shape_openai(
        provider("anthropic", api_key="k"), "chat/completions", {"model": "a", "stream": True}, "c"
    )
    assert (call.path, call.endpoint, call.model_upstream, call.strip_usage_chunk) == (
        "v1/chat/completions",
        "chat.completions",
        "c",
        True,
    )
    up = ANTHROPIC.upstream_request(call, "POST", "", [("x-api-key", "client")], b"{}")
    assert up.headers == [("Authorization", "Bearer k")]
    with pytest.raises(GatewayError):
        ANTHROPIC.shape_openai(provider("anthropic"), "embeddings", {"model": "a"}, "c")


def test_error_body_format() -> None:
    body = orjson.loads(ANTHROPIC.error_body(429, "budget_exceeded", "over budget"))
    assert body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "over budget", "code": "budget_exceeded"},
    }
    assert orjson.loads(ANTHROPIC.error_body(404, "x", "m"))["error"]["type"] == "not_found_error"
