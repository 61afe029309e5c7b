"""The `ollama` kind: NDJSON streams by default, counts on the `done` object, error lines."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import metered, provider, raw_call, run

OLLAMA = KINDS["ollama"]
NDJSON = "application/x-ndjson"


def ndjson(*objs: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def line(content: str) -> dict[str, object]:
    return {"model": "llama3.2", "message": {"role": "assistant", "content": content}, "done": False}


DONE = {
    "model": "llama3.2",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "prompt_eval_count": 26,
    "eval_count": 298,
}


@pytest.mark.parametrize("ctype", [NDJSON, ""])
@pytest.mark.parametrize("split", ["whole", "1", "9", "random"])
def test_stream_is_the_default_and_counts_come_last(ctype: str, split: str) -> None:
    call = raw_call("ollama", "api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]})
    assert call.stream and call.endpoint == "ollama.chat"
    wire = ndjson(line("Hel"), line("lo"), DONE)
    meter = OLLAMA.new_meter(call, 200, ctype)
    relayed, report = run(meter, wire, split)
    assert relayed == wire
    assert report.usage is not None and (report.usage.input_tokens, report.usage.output_tokens) == (26, 298)
    assert report.model == "llama3.2" and report.error is None
    assert meter.output_text() == "Hello"


def test_error_line_after_content() -> None:
    call = raw_call("ollama", "api/generate", {"model": "llama3.2", "prompt": "hi"})
    wire = ndjson({"model": "llama3.2", "response": "par", "done": False}, {"error": "model runner crashed"})
    report = metered("ollama", call, wire, ctype=NDJSON, split="4")
    assert report.error == "model runner crashed" and report.usage is None


def test_non_stream_generate_and_embed() -> None:
    call = raw_call("ollama", "api/generate", {"model": "m", "prompt": "hi", "stream": False})
    assert not call.stream and call.endpoint == "ollama.generate"
    body = {"model": "m", "response": "Hi!", "done": True, "prompt_eval_count": 3, "eval_count": 2}
    meter = OLLAMA.new_meter(call, 200, "application/json; charset=utf-8")
    assert run(meter, orjson.dumps(body))[1].usage is not None
    assert meter.output_text() == "Hi!"
    embed = raw_call("ollama", "api/embed", {"model": "all-minilm", "input": ["a", "b"]})
    assert (embed.endpoint, embed.stream) == ("ollama.embed", False)
    report = metered("ollama", embed, orjson.dumps({"embeddings": [[0.1]], "prompt_eval_count": 8}))
    assert report.usage is not None and report.usage.input_tokens == 8


def test_auth_openai_route_and_error_body() -> None:
    call = raw_call("ollama", "api/chat", {"model": "m"})
    assert OLLAMA.upstream_request(call, "POST", "", [], b"{}").headers == []
    keyed = OLLAMA.shape_raw(provider("ollama", api_key="k"), "POST", "api/chat", {"model": "m"})
    assert OLLAMA.upstream_request(keyed, "POST", "", [], b"{}").headers == [("Authorization", "Bearer k")]
    compat = OLLAMA.shape_openai(
        provider("ollama", base_url="http://localhost:11434"), "chat/completions", {"model": "q"}, "q"
    )
    assert OLLAMA.upstream_request(compat, "POST", "", [], b"{}").url == "http://localhost:11434/v1/chat/completions"
    assert orjson.loads(OLLAMA.error_body(404, "model_not_found", "model 'x' not found")) == {
        "error": "model 'x' not found"
    }
    assert raw_call("ollama", "api/chat", {"model": "m", "think": True}).thinking
