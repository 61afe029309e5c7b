"""The `openai` kind: usage wherever OpenAI-compatible APIs put it, injected usage stripped, errors in 200s."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from gateway.config import Config
from gateway.costing import EventPricer
from gateway.metering import Outcome, build_event
from gateway.providers.base import Call, GatewayError
from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import metered, provider, raw_call, run, sse

SSE = "text/event-stream"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def chunk(content: str | None = None, **extra: object) -> dict[str, object]:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return {"id": "c1", "model": "gpt-4o-mini", "choices": choices, **extra}


def stream_call(include_usage: bool = False) -> tuple[Call, dict[str, object]]:
    body: dict[str, object] = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return raw_call("openai", "chat/completions", body), body


@pytest.mark.parametrize("split", ["whole", "1", "7", "random"])
def test_injected_usage_chunk_is_stripped(split: str) -> None:
    call, body = stream_call()
    assert call.strip_usage_chunk and call.body_changed
    assert body["stream_options"] == {"include_usage": True}
    content = sse(chunk("Hel"), chunk("lo"), crlf=True)
    usage_chunk = sse(chunk(None, usage=USAGE), crlf=True)
    wire = content + usage_chunk + b"data: [DONE]\r\n\r\n"
    meter = KINDS["openai"].new_meter(call, 200, SSE)
    relayed, report = run(meter, wire, split)
    assert relayed == content + b"data: [DONE]\r\n\r\n"
    assert report.usage is not None and report.usage.total_tokens == 15
    assert meter.output_text() == "Hello"


def test_an_injected_usage_chunk_carrying_an_error_reaches_the_client() -> None:
    """Only the usage is the gateway's: the client would have seen the error without it."""
    call, _ = stream_call()
    failed = sse(chunk(None, usage=USAGE, error={"message": "model overloaded", "type": "server_error"}))
    wire = sse(chunk("partial")) + failed + b"data: [DONE]\n\n"
    relayed, report = run(KINDS["openai"].new_meter(call, 200, SSE), wire, "7")
    assert relayed == wire
    assert report.error == "model overloaded" and report.usage is not None and report.usage.total_tokens == 15


def test_the_service_tier_the_answer_reports_is_read_from_a_stream_and_a_whole_body() -> None:
    call, _ = stream_call(include_usage=True)
    wire = sse(chunk("Hi", service_tier="priority"), chunk(None, usage=USAGE, service_tier="priority"))
    assert metered("openai", call, wire, ctype=SSE, split="7").service_tier == "priority"
    whole = raw_call("openai", "chat/completions", {"model": "gpt-4o-mini", "service_tier": "flex"})
    body = orjson.dumps({"id": "c", "model": "o3", "choices": [], "usage": USAGE, "service_tier": "flex"})
    assert metered("openai", whole, body, ctype="application/json").service_tier == "flex"


def test_client_asked_usage_chunk_is_kept() -> None:
    call, _ = stream_call(include_usage=True)
    assert not call.strip_usage_chunk
    wire = sse(chunk("Hi"), chunk(None, usage=USAGE)) + b"data: [DONE]\n\n"
    assert run(KINDS["openai"].new_meter(call, 200, SSE), wire, "7")[0] == wire


def test_usage_in_first_choice() -> None:
    call, _ = stream_call(include_usage=True)
    last = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "usage": USAGE}]}
    report = metered("openai", call, sse(chunk("a"), last), ctype=SSE, split="5")
    assert report.usage is not None and (report.usage.input_tokens, report.usage.output_tokens) == (10, 5)


def test_x_groq_usage_and_top_level_usage_count_once() -> None:
    call, _ = stream_call(include_usage=True)
    last = chunk(None, usage=USAGE, x_groq={"id": "req", "usage": USAGE})
    report = metered("openai", call, sse(chunk("a"), last), ctype=SSE)
    assert report.usage is not None and report.usage.total_tokens == 15


def test_running_totals_revised_in_last_chunk_are_not_summed() -> None:
    call, _ = stream_call(include_usage=True)
    first = chunk("a", usage={"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10})
    last = chunk(None, usage={"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19})
    report = metered("openai", call, sse(first, last, space=False), ctype=SSE, split="3")
    assert report.usage is not None
    assert (report.usage.input_tokens, report.usage.output_tokens, report.usage.total_tokens) == (12, 7, 19)


def test_hidden_reasoning_from_total_gap() -> None:
    body = {
        "model": "gemini-2.5-flash",
        "choices": [],
        "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 40},
    }
    call = raw_call("openai", "chat/completions", {"model": "gemini-2.5-flash"})
    report = metered("openai", call, orjson.dumps(body), ctype="application/json")
    assert report.usage is not None
    assert (report.usage.output_tokens, report.usage.reasoning_tokens, report.usage.total_tokens) == (32, 28, 40)


def test_error_object_in_last_chunk_next_to_usage() -> None:
    call, _ = stream_call(include_usage=True)
    last = chunk(None, usage=USAGE, error={"message": "upstream overloaded", "type": "server_error"})
    report = metered("openai", call, sse(chunk("partial"), last), ctype=SSE)
    assert report.error == "upstream overloaded"
    assert report.usage is not None and report.usage.total_tokens == 15


def test_error_frame_after_content() -> None:
    call, _ = stream_call(include_usage=True)
    wire = sse(chunk("some"), chunk(" text")) + b'event: error\ndata: {"error":{"message":"boom"}}\n\n'
    report = metered("openai", call, wire, ctype=SSE, split="4")
    assert report.error == "boom"


def test_comments_no_done_and_unterminated_last_event() -> None:
    call, _ = stream_call(include_usage=True)
    wire = b": keep-alive\n\n" + sse(chunk("x")) + b"data:" + orjson.dumps(chunk(None, usage=USAGE))
    report = metered("openai", call, wire, ctype=SSE, split="2")
    assert report.usage is not None and report.usage.total_tokens == 15


def test_json_output_text_reads_the_message() -> None:
    call = raw_call("openai", "chat/completions", {"model": "m"})
    body = {"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}}]}
    meter = KINDS["openai"].new_meter(call, 200, "application/json")
    run(meter, orjson.dumps(body))
    assert meter.output_text() == "Paris."


def test_bearer_replaces_client_credential_and_passes_through_without_key() -> None:
    kind = KINDS["openai"]
    call = kind.shape_raw(provider("openai", api_key="sk-up"), "POST", "chat/completions", {"model": "m"})
    up = kind.upstream_request(call, "POST", "", [("authorization", "Bearer client")], b"{}")
    assert [v for k, v in up.headers if k.lower() == "authorization"] == ["Bearer sk-up"]
    call = kind.shape_raw(provider("openai"), "POST", "chat/completions", {"model": "m"})
    up = kind.upstream_request(call, "POST", "", [("authorization", "Bearer client")], b"{}")
    assert up.headers == [("authorization", "Bearer client")]


def test_unknown_op_is_refused() -> None:
    with pytest.raises(GatewayError) as err:
        KINDS["openai"].shape_openai(provider("openai"), "images/generations", {"model": "m"}, "m")
    assert err.value.status == 404


@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_text_in_the_answer_prices_a_hybrid_model_in_thinking_mode(stream: bool) -> None:
    """qwen3-32b bills output at 20 instead of 8 per 1M in thinking mode; an answer with reasoning text ran in
    it even when the request did not ask (open-source Qwen3 think by default) and usage reports no reasoning."""
    usage = {"prompt_tokens": 10, "completion_tokens": 1000, "total_tokens": 1010}
    body = {"model": "qwen3-32b", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    call = raw_call("openai", "chat/completions", body)
    if stream:
        wire = sse(chunk(None, choices=[{"index": 0, "delta": {"content": None, "reasoning_content": ""}}]),
                   chunk(None, choices=[{"index": 0, "delta": {"content": None, "reasoning_content": "Let me"}}]),
                   chunk("Hi"), chunk(None, usage=usage)) + b"data: [DONE]\n\n"  # fmt: skip
        plain = sse(chunk(None, choices=[{"index": 0, "delta": {"content": "Hi", "reasoning_content": None}}]),
                    chunk(None, usage=usage))  # fmt: skip
        ctype = SSE
    else:
        message = {"role": "assistant", "content": "Hi", "reasoning_content": "Let me think."}
        wire = orjson.dumps({"model": "qwen3-32b", "choices": [{"index": 0, "message": message}], "usage": usage})
        plain = orjson.dumps({"model": "qwen3-32b", "choices": [{"index": 0, "message": {**message,
                              "reasoning_content": ""}}], "usage": usage})  # fmt: skip
        ctype = "application/json"
    pricer = EventPricer.from_config(Config())
    for answer, thinking, output_cost in ((wire, True, "0.02"), (plain, False, "0.008")):
        meter = KINDS["openai"].new_meter(call, 200, ctype)
        report = run(meter, answer, "7")[1]
        call.provider = provider("openai", name="dashscope-compat", price_as="dashscope")
        event = build_event("r", datetime(2025, 10, 1, tzinfo=UTC), call, KINDS["openai"], meter,
                            Outcome(200, reached_upstream=True), pricer, report)  # fmt: skip
        assert (event.thinking, event.output_cost) == (thinking, Decimal(output_cost)), answer
