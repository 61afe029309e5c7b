"""The `gemini` kind: Google's native Generative Language API, and Gemini's OpenAI-compatible endpoint.

The model is named in the path (`v1beta/models/{model}:{method}`). `streamGenerateContent` streams
SSE with `?alt=sse` and otherwise one JSON array sent element by element; the meter reads both as
they pass. Every chunk repeats `usageMetadata` so far, so the last one wins. Input counts tool-use
prompt tokens, output counts thinking tokens (Gemini reports both apart), and a total above input
plus output is hidden reasoning. A `finishReason` such as SAFETY ends a response; it is no error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from gateway.providers import common, openai
from gateway.providers.base import JSON, Call, Meter, ProviderConfig, UpstreamRequest
from gateway.providers.frames import FrameMeter, RunningTotalsReader, string_at
from gateway.providers.native import NativeKind
from gateway.usage import Usage, as_int

_MODEL_PATH = re.compile(r"^v1\w*/(?:models|tunedModels)/([^/:]+):(\w+)$")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def usage_from(meta: JSON) -> Usage:
    """Normalize `usageMetadata`."""
    thoughts = as_int(meta.get("thoughtsTokenCount"))
    usage = Usage(
        input_tokens=as_int(meta.get("promptTokenCount")) + as_int(meta.get("toolUsePromptTokenCount")),
        cached_input_tokens=as_int(meta.get("cachedContentTokenCount")),
        output_tokens=as_int(meta.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
    )
    total = meta.get("totalTokenCount")
    usage.add_hidden_reasoning(as_int(total) if total is not None else None)
    return usage


class GenerateContentReader(RunningTotalsReader):
    usage_marker: ClassVar[bytes] = b'"usageMetadata"'
    model_marker: ClassVar[bytes | None] = b'"modelVersion"'

    def usage_of(self, obj: JSON) -> Usage | None:
        meta = obj.get("usageMetadata")
        return usage_from(meta) if isinstance(meta, dict) else None

    def model_of(self, obj: JSON) -> str | None:
        return string_at(obj, "modelVersion")

    def text_of(self, obj: JSON) -> str:
        candidates = obj.get("candidates")
        if not (isinstance(candidates, list) and candidates and isinstance(candidates[0], dict)):
            return ""
        return common.text_of(common.get_path(candidates[0], "content", "parts"))


def _field(obj: Any, camel: str, snake: str) -> Any:
    """A field by its JSON name or its proto name: the API accepts both spellings."""
    if not isinstance(obj, dict):
        return None
    return obj[camel] if camel in obj else obj.get(snake)


def thinking_requested(body: JSON) -> bool:
    config = _field(_field(body, "generationConfig", "generation_config"), "thinkingConfig", "thinking_config")
    if not isinstance(config, dict):
        return False
    if _field(config, "includeThoughts", "include_thoughts") is True:
        return True
    if _field(config, "thinkingLevel", "thinking_level"):
        return True
    budget = _field(config, "thinkingBudget", "thinking_budget")
    return budget is not None and budget != 0


def endpoint_for_path(path: str) -> tuple[str, str | None]:
    """(`gemini.{method}`, model) for a model path; other paths are named by their collection."""
    clean = path.strip("/")
    match = _MODEL_PATH.match(clean)
    if match:
        return "gemini." + match.group(2), match.group(1)
    parts = [p for p in clean.split("/") if not re.fullmatch(r"v1\w*", p)]
    return "gemini." + (parts[0] if parts else "root"), None


def _contents_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(t for t in (_contents_text(v) for v in value) if t)
    if isinstance(value, dict):
        return common.text_of(value.get("parts"))
    return common.text_of(value)


def request_text(body: JSON | None) -> str:
    """Prompt text of a native request: contents, system instruction, tools, embedding inputs."""
    if not body:
        return ""
    inner = _field(body, "generateContentRequest", "generate_content_request")
    source = inner if isinstance(inner, dict) else body
    parts = [
        _contents_text(_field(source, "systemInstruction", "system_instruction")),
        _contents_text(source.get("contents")),
        _contents_text(source.get("content")),
        _contents_text([r.get("content") for r in source.get("requests") or () if isinstance(r, dict)]),
    ]
    if source.get("tools"):
        parts.append(orjson.dumps(source["tools"]).decode())
    return "\n".join(p for p in parts if p)


def with_query_key(query: str, key: str) -> tuple[str, bool]:
    """The query with its `key=` parameter set to `key`, and whether it had one."""
    params = query.split("&") if query else []
    found = False
    for i, param in enumerate(params):
        if param.partition("=")[0] == "key":
            params[i] = "key=" + quote(key, safe="")
            found = True
    return "&".join(params), found


def error_body(status: int, code: str, message: str) -> bytes:
    name = _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    detail = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "meterway"}
    return orjson.dumps({"error": {"code": status, "message": message, "status": name, "details": [detail]}})


class GeminiKind(NativeKind):
    name: ClassVar[str] = "gemini"
    openai_prefix = "v1beta/openai/"
    openai_ops = frozenset({"chat/completions", "embeddings"})

    def is_openai_path(self, path: str) -> bool:
        return "openai/" in path

    def shape_native(
        self, provider: ProviderConfig, path: str, body: JSON | None, headers: Sequence[tuple[str, str]]
    ) -> Call:
        endpoint, model = endpoint_for_path(path)
        call = Call(provider, endpoint, model, model, endpoint == "gemini.streamGenerateContent", body=body, path=path)
        call.thinking = body is not None and thinking_requested(body)
        return call

    def upstream_request(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes
    ) -> UpstreamRequest:
        if openai.is_openai_call(call):
            return openai.bearer_request(call, method, query, headers, raw_body, ("x-goog-api-key",))
        key = call.provider.api_key or None
        query, in_query = with_query_key(query, key) if key else (query, False)
        if in_query:  # the client put its key in the query: ours goes there too, and only there
            headers = [(k, v) for k, v in headers if k.lower() not in ("x-goog-api-key", "authorization")]
            key = None
        hdrs = common.with_credential(call.provider, headers, "x-goog-api-key", key, ("authorization",))
        return common.build(call, method, query, hdrs, raw_body)

    def native_meter(self, status: int, content_type: str) -> Meter:
        return FrameMeter(GenerateContentReader(), status)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return error_body(status, code, message)

    def input_text(self, body: JSON | None) -> str:
        if body and "messages" in body:
            return openai.request_text(body)
        return request_text(body)
