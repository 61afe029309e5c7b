"""The `dashscope` kind: native SSE found without a content type, cumulative usage, error frames."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import metered, provider, raw_call, run

DASHSCOPE = KINDS["dashscope"]
PATH = "api/v1/services/aigc/text-generation/generation"


def frame(n: int, payload: Mapping[str, object], event: str = "result", status: int = 200) -> bytes:
    return f"id:{n}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:".encode() + orjson.dumps(payload) + b"\n\n"


def result(text: str, out: int, finish: str = "null") -> dict[str, object]:
    usage = {
        "input_tokens": 16,
        "output_tokens": out,
        "total_tokens": 16 + out,
        "prompt_tokens_details": {"cached_tokens": 8},
    }
    return {"output": {"finish_reason": finish, "text": text}, "usage": usage, "request_id": "r1"}


@pytest.mark.parametrize("ctype", ["", "text/event-stream;charset=UTF-8"])
@pytest.mark.parametrize("split", ["whole", "5", "random"])
def test_native_stream_with_or_without_content_type(ctype: str, split: str) -> None:
    call = raw_call(
        "dashscope", PATH, {"model": "qwen-plus", "input": {"prompt": "1+1"}}, headers=[("X-DashScope-SSE", "enable")]
    )
    assert call.stream and call.endpoint == "dashscope.generation"
    wire = frame(1, result("1+1", 2)) + frame(2, result("=2", 5)) + frame(3, result("", 5, "stop"))
    meter = DASHSCOPE.new_meter(call, 200, ctype)
    relayed, report = run(meter, wire, split)
    assert relayed == wire
    u = report.usage
    assert u is not None and (u.input_tokens, u.cached_input_tokens, u.output_tokens) == (16, 8, 5)
    assert meter.output_text() == "1+1=2"


def test_error_frame_after_content() -> None:
    call = raw_call("dashscope", PATH, {"model": "qwen-plus", "parameters": {"incremental_output": True}})
    error = {
        "code": "DataInspectionFailed",
        "message": "Output data may contain inappropriate content.",
        "request_id": "r",
    }
    wire = frame(1, result("some", 3)) + frame(2, error, event="error", status=400)
    report = metered("dashscope", call, wire, split="4")
    assert report.error == "DataInspectionFailed: Output data may contain inappropriate content."
    assert report.usage is not None and report.usage.output_tokens == 3


def test_json_body_reasoning_and_message_text() -> None:
    body = {
        "output": {"choices": [{"message": {"role": "assistant", "content": "2", "reasoning_content": "think"}}]},
        "usage": {
            "input_tokens": 5,
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 28},
            "total_tokens": 35,
        },
    }
    call = raw_call("dashscope", PATH, {"model": "qwen3", "parameters": {"enable_thinking": True}})
    assert call.thinking and not call.stream
    meter = DASHSCOPE.new_meter(call, 200, "application/json")
    report = run(meter, orjson.dumps(body, option=orjson.OPT_INDENT_2), "7")[1]
    assert report.usage is not None and (report.usage.output_tokens, report.usage.reasoning_tokens) == (30, 28)
    assert sorted(meter.output_text().split("\n")) == ["2", "think"]


def test_error_body_and_error_status() -> None:
    body = DASHSCOPE.error_body(400, "InvalidParameter", "bad input")
    assert orjson.loads(body) == {"code": "InvalidParameter", "message": "bad input"}
    report = metered("dashscope", raw_call("dashscope", PATH, {}), body, status=400, ctype="application/json")
    assert report.error is None and report.usage is None


def test_bearer_and_compatible_mode() -> None:
    prov = provider("dashscope", base_url="https://dashscope.aliyuncs.com", api_key="sk-ds")
    call = DASHSCOPE.shape_openai(prov, "chat/completions", {"model": "qwen", "stream": True}, "qwen-plus")
    assert (call.path, call.model_upstream, call.strip_usage_chunk) == (
        "compatible-mode/v1/chat/completions",
        "qwen-plus",
        True,
    )
    up = DASHSCOPE.upstream_request(call, "POST", "", [("Authorization", "Bearer client")], b"{}")
    assert up.url == "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions"
    assert up.headers == [("Authorization", "Bearer sk-ds")]
    raw = DASHSCOPE.shape_raw(prov, "POST", "compatible-mode/v1/chat/completions", {"model": "qwen-plus"})
    assert raw.endpoint == "chat.completions"
    assert raw_call("dashscope", "api/v1/services/aigc/multimodal-generation/generation", {}).endpoint == (
        "dashscope.multimodal_generation"
    )
