"""The `gemini` kind: model from the path, SSE and JSON-array streams, thoughts and tool-use tokens."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import metered, provider, raw_call, run, sse

GEMINI = KINDS["gemini"]
STREAM_PATH = "v1beta/models/gemini-2.5-pro:streamGenerateContent"


def chunk(text: str, candidates: int, finish: str | None = None, **meta: int) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 10, "candidatesTokenCount": candidates, **meta}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-pro"}


def json_array_stream(*chunks: Mapping[str, object]) -> bytes:
    """How Gemini streams without `alt=sse`: one JSON array, an element at a time."""
    return b"[" + b"\n,\r\n".join(orjson.dumps(c, option=orjson.OPT_INDENT_2) for c in chunks) + b"]"


@pytest.mark.parametrize("split", ["whole", "1", "7", "random"])
def test_json_array_stream_without_alt_sse(split: str) -> None:
    wire = json_array_stream(
        chunk("Hel", 1, thoughtsTokenCount=20, totalTokenCount=31),
        chunk('lo "}]', 3, "STOP", thoughtsTokenCount=20, toolUsePromptTokenCount=4, totalTokenCount=37),
    )
    call = raw_call("gemini", STREAM_PATH, {"contents": []})
    assert call.stream and (call.endpoint, call.model_upstream) == ("gemini.streamGenerateContent", "gemini-2.5-pro")
    meter = GEMINI.new_meter(call, 200, "application/json; charset=UTF-8")
    relayed, report = run(meter, wire, split)
    assert relayed == wire
    u = report.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.total_tokens) == (14, 23, 20, 37)
    assert report.model == "gemini-2.5-pro" and report.error is None
    assert meter.output_text() == 'Hello "}]'


def test_safety_finish_is_not_an_error_but_an_error_object_is() -> None:
    call = raw_call("gemini", STREAM_PATH, {"contents": []})
    safe = metered("gemini", call, sse(chunk("x", 1, "SAFETY")), ctype="text/event-stream")
    assert safe.error is None
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    report = metered("gemini", call, sse(chunk("partial", 2), error, crlf=True), ctype="text/event-stream", split="6")
    assert report.error == "The model is overloaded."
    assert report.usage is not None and report.usage.output_tokens == 2
    in_array = metered("gemini", call, json_array_stream(chunk("partial", 2), error), ctype="application/json")
    assert in_array.error == "The model is overloaded."


def test_error_status_body_is_not_a_200_error() -> None:
    call = raw_call("gemini", "v1beta/models/nope:generateContent", {})
    body = GEMINI.error_body(404, "model_not_found", "no such model")
    assert orjson.loads(body)["error"]["status"] == "NOT_FOUND"
    report = metered("gemini", call, body, status=404, ctype="application/json")
    assert report.error is None and report.usage is None


def test_key_header_replaces_client_key_and_passes_through_without_one() -> None:
    call = GEMINI.shape_raw(provider("gemini", api_key="g-up"), "POST", "v1beta/models/m:generateContent", {})
    up = GEMINI.upstream_request(call, "POST", "", [("x-goog-api-key", "client")], b"{}")
    assert up.headers == [("x-goog-api-key", "g-up")]
    up = GEMINI.upstream_request(call, "POST", "alt=sse&key=client", [], b"{}")
    assert up.url.endswith(":generateContent?alt=sse&key=g-up")
    assert up.headers == []
    bare = raw_call("gemini", "v1beta/models/m:generateContent", {})
    up = GEMINI.upstream_request(bare, "POST", "key=client", [("x-goog-api-key", "c")], b"{}")
    assert up.url.endswith("?key=client") and up.headers == [("x-goog-api-key", "c")]


def test_thinking_flag() -> None:
    def thinking(config: dict[str, object]) -> bool:
        return raw_call("gemini", STREAM_PATH, {"generationConfig": {"thinkingConfig": config}}).thinking

    assert thinking({"thinkingBudget": 1024}) and thinking({"thinkingBudget": -1})
    assert thinking({"includeThoughts": True}) and thinking({"thinkingLevel": "low"})
    assert not thinking({"thinkingBudget": 0})
    assert raw_call("gemini", STREAM_PATH, {"generation_config": {"thinking_config": {"thinking_budget": 5}}}).thinking


def test_openai_endpoint_and_input_text() -> None:
    prov = provider("gemini", base_url="https://generativelanguage.googleapis.com", api_key="g")
    call = GEMINI.shape_openai(prov, "chat/completions", {"model": "gemini-2.5-flash"}, "gemini-2.5-flash")
    up = GEMINI.upstream_request(call, "POST", "", [], b"{}")
    assert up.url == "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
    assert up.headers == [("Authorization", "Bearer g")]
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}],
    }
    assert GEMINI.input_text(body) == "Be brief.\nCapital of France?"
    assert raw_call("gemini", "v1beta/models/e:batchEmbedContents", {}).endpoint == "gemini.batchEmbedContents"
