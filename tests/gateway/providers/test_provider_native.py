"""What the kinds with a native API share: their OpenAI-compatible API is shaped and metered as OpenAI's."""

from __future__ import annotations

import pytest

from gateway.providers.base import GatewayError
from gateway.providers.frames import FrameMeter
from gateway.providers.openai import JSONBodyMeter, SSEMeter
from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import provider, raw_call

# kind, the upstream path of /v1/chat/completions, a raw OpenAI-compatible path, a native path and its endpoint
NATIVE = [
    ("anthropic", "v1/chat/completions", "v1/chat/completions", "v1/messages", "anthropic.messages"),
    ("gemini", "v1beta/openai/chat/completions", "v1beta/openai/chat/completions",
     "v1beta/models/gemini-2.5-flash:generateContent", "gemini.generateContent"),
    ("dashscope", "compatible-mode/v1/chat/completions", "compatible-mode/v1/chat/completions",
     "api/v1/services/aigc/text-generation/generation", "dashscope.generation"),
    ("ollama", "v1/chat/completions", "v1/chat/completions", "api/chat", "ollama.chat"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "upstream", "openai_path", "native_path", "native_endpoint"), NATIVE)
def test_openai_requests_go_to_the_compatible_api_and_are_metered_as_openai(
    kind: str, upstream: str, openai_path: str, native_path: str, native_endpoint: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    routed = KINDS[kind].shape_openai(provider(kind), "chat/completions", dict(body), "m-upstream")
    assert (routed.path, routed.endpoint, routed.model_upstream) == (upstream, "chat.completions", "m-upstream")
    assert isinstance(KINDS[kind].new_meter(routed, 200, "text/event-stream"), SSEMeter)
    raw = raw_call(kind, openai_path, dict(body))
    assert raw.endpoint == "chat.completions"
    assert isinstance(KINDS[kind].new_meter(raw, 200, "application/json"), JSONBodyMeter)
    native = raw_call(kind, native_path, {"model": "m", "stream": False})
    assert native.endpoint == native_endpoint
    assert isinstance(KINDS[kind].new_meter(native, 200, "application/json"), FrameMeter)


@pytest.mark.parametrize(("kind", "op"), [("anthropic", "embeddings"), ("gemini", "completions"),
                                          ("gemini", "responses")])  # fmt: skip
def test_an_openai_endpoint_the_provider_does_not_serve_is_refused_by_name(kind: str, op: str) -> None:
    with pytest.raises(GatewayError) as info:
        KINDS[kind].shape_openai(provider(kind, name="mine"), op, {"model": "m"}, "m")
    assert (info.value.status, info.value.code) == (400, "unsupported_endpoint")
    assert info.value.message == f"provider 'mine' does not serve /v1/{op}"
