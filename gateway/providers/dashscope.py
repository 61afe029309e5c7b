"""The `dashscope` kind: Alibaba Cloud Model Studio's native API, and its OpenAI-compatible mode.

Native requests go to `api/v1/services/aigc/{task}/generation` (base URL like
https://dashscope.aliyuncs.com); OpenAI-shaped ones to `compatible-mode/v1/{op}`. A native stream is
asked for with `X-DashScope-SSE: enable`. Its SSE frames (`id:`, `event:result`, a `:HTTP_STATUS/200`
comment, `data:` without a space, no `[DONE]`) each carry the usage so far, so the last one wins.
Such streams have been recorded without a content type, so the meter tells SSE from JSON by the
first bytes. Errors are `{"code", "message", "request_id"}`, in a stream as an `event:error` frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from gateway.providers import common, openai
from gateway.providers.base import JSON, Call, Meter, ProviderConfig
from gateway.providers.frames import FrameMeter, RunningTotalsReader
from gateway.providers.native import NativeKind
from gateway.usage import Usage

_ENDPOINTS = {
    "text-generation/generation": "dashscope.generation",
    "multimodal-generation/generation": "dashscope.multimodal_generation",
    "text-embedding/text-embedding": "dashscope.text_embedding",
}
_COMPATIBLE = "compatible-mode/"


def endpoint_for_path(path: str) -> str:
    clean = path.strip("/")
    for suffix, name in _ENDPOINTS.items():
        if clean.endswith(suffix):
            return name
    named = [part for part in common.path_parts(clean) if part != "{id}"]  # `tasks/{task_id}`: `tasks`
    return "dashscope." + (named[-1].replace("-", "_") if named else "root")


class GenerationReader(RunningTotalsReader):
    usage_marker: ClassVar[bytes] = b'"usage"'
    error_markers: ClassVar[tuple[bytes, ...]] = (b'"code"', b'"error"')

    def usage_of(self, obj: JSON) -> Usage | None:
        return openai.usage_from(obj.get("usage"))  # input_tokens / output_tokens / *_details, as OpenAI's

    def error_of(self, obj: JSON) -> str | None:
        code = obj.get("code")
        if isinstance(code, str) and code and not obj.get("output"):
            return f"{code}: {obj.get('message') or ''}".rstrip(": ")
        return common.error_message(obj)

    def text_of(self, obj: JSON) -> str:
        output = obj.get("output")
        if not isinstance(output, dict):
            return ""
        choices = output.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            return common.text_of(choices[0].get("message"))
        return str(output.get("text") or "")


def _parameters(body: JSON) -> JSON:
    params = body.get("parameters")
    return params if isinstance(params, dict) else {}


def stream_requested(body: JSON | None, headers: Sequence[tuple[str, str]]) -> bool:
    if (common.header(headers, "X-DashScope-SSE") or "").lower() == "enable":
        return True
    if not body:
        return False
    params = _parameters(body)
    return body.get("stream") is True or params.get("stream") is True or params.get("incremental_output") is True


def thinking_requested(body: JSON) -> bool:
    return _parameters(body).get("enable_thinking") is True or body.get("enable_thinking") is True


def request_text(body: JSON | None) -> str:
    """Prompt text of a native request: `input.messages`, `input.prompt`, embedding `input.texts`."""
    if not body:
        return ""
    inp = body.get("input")
    if not isinstance(inp, dict):
        return openai.request_text(body)
    parts = [common.text_of(inp.get(k)) for k in ("messages", "prompt", "texts", "history")]
    tools = _parameters(body).get("tools")
    if tools:
        parts.append(orjson.dumps(tools).decode())
    return "\n".join(p for p in parts if p)


def error_body(status: int, code: str, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message})


class DashScopeKind(NativeKind):
    name: ClassVar[str] = "dashscope"
    openai_prefix = _COMPATIBLE + "v1/"

    def is_openai_path(self, path: str) -> bool:
        return path.strip("/").startswith(_COMPATIBLE)

    def shape_native(
        self, provider: ProviderConfig, path: str, body: JSON | None, headers: Sequence[tuple[str, str]]
    ) -> Call:
        model = common.body_model(body)
        stream = stream_requested(body, headers)
        call = Call(provider, endpoint_for_path(path), model, model, stream, body=body, path=path)
        call.thinking = body is not None and thinking_requested(body)
        return call

    def native_meter(self, status: int, content_type: str) -> Meter:
        return FrameMeter(GenerationReader(), status)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return error_body(status, code, message)

    def input_text(self, body: JSON | None) -> str:
        return request_text(body)
