"""The `anthropic` kind: the Messages API (`/v1/messages`), and Anthropic's OpenAI-compatible endpoint.

Anthropic reports input in three additive parts (uncached, cache read, cache write), so input is
their sum, and splits cache writes by TTL. A stream states usage in `message_start` and revises it
in each `message_delta`: any field (input and cache counts too, not only output) may be revised, and
the last value of each field wins. Errors in a stream arrive as `event: error` frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from gateway.providers import common, openai
from gateway.providers.base import JSON, Call, Meter, MeterReport, ProviderConfig, UpstreamRequest, sse_data
from gateway.providers.frames import FrameMeter, string_at
from gateway.providers.native import NativeKind
from gateway.usage import Usage, as_int

API_VERSION = "2023-06-01"
_ENDPOINTS = {
    "v1/messages": "anthropic.messages",
    "v1/messages/count_tokens": "anthropic.count_tokens",
    "v1/complete": "anthropic.complete",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_USAGE_EVENTS = ("message_start", "message_delta")


def endpoint_for_path(path: str) -> str:
    clean = path.strip("/")
    if clean in _ENDPOINTS:
        return _ENDPOINTS[clean]
    parts = common.path_parts(clean)
    if parts[:1] == ["v1"]:
        parts = parts[1:]
    return "anthropic." + (".".join(parts[:2]) or "root")


def usage_from(u: JSON) -> Usage:
    """Normalize Anthropic usage: input counts cache reads and writes, which Anthropic reports apart."""
    read = as_int(u.get("cache_read_input_tokens"))
    split = u.get("cache_creation")
    split = split if isinstance(split, dict) else {}
    write_5m = as_int(split.get("ephemeral_5m_input_tokens"))
    write_1h = as_int(split.get("ephemeral_1h_input_tokens"))
    write = as_int(u.get("cache_creation_input_tokens")) or write_5m + write_1h
    return Usage(
        input_tokens=as_int(u.get("input_tokens")) + read + write,
        cached_input_tokens=read,
        cache_write_tokens=write,
        output_tokens=as_int(u.get("output_tokens")),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
    )


def overlay(base: JSON, update: JSON) -> None:
    """Revise `base` field by field with the non-null fields of `update` (nested objects merged)."""
    for key, value in update.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            overlay(base[key], value)
        else:
            base[key] = value


class MessagesReader:
    """Reads a Messages API response: a whole message, or a stream of events."""

    def __init__(self) -> None:
        self._usage: JSON | None = None  # the raw usage so far, revised by each message_delta
        self._final = False  # a message_delta (or a whole message) reported it: not message_start's placeholder
        self._model: str | None = None
        self._error: str | None = None

    def take(self, event: str, data: bytes) -> None:
        errorish = event == "error" or b'"error"' in data
        if not (errorish or event in _USAGE_EVENTS or b'"usage"' in data):
            return
        obj = common.loads(data)
        if not isinstance(obj, dict):
            if event == "error":
                self._error = data.decode("utf-8", "replace")[:500] or "stream error"
            return
        source = obj.get("message") if obj.get("type") == "message_start" else obj
        if isinstance(source, dict):
            self._model = string_at(source, "model") or self._model
            if isinstance(source.get("usage"), dict):
                self._usage = self._usage if self._usage is not None else {}
                overlay(self._usage, source["usage"])
                self._final = self._final or obj.get("type") != "message_start"
        if errorish:
            self._error = common.error_message(obj) or ("stream error" if event == "error" else self._error)

    def result(self) -> MeterReport:
        """message_start's usage counts the input but holds a placeholder output (1): a stream that ended
        before any message_delta (cut off, or an error event) reports its input only."""
        usage = usage_from(self._usage) if self._usage is not None else None
        if usage is not None and not self._final:
            return MeterReport(model=self._model, error=self._error, input_usage=usage)
        return MeterReport(usage=usage, model=self._model, error=self._error)

    def text_of(self, obj: JSON) -> str:
        if obj.get("type") == "content_block_delta":
            delta = obj.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            return str(delta.get("text") or delta.get("thinking") or delta.get("partial_json") or "")
        if obj.get("type") == "message":
            return common.text_of(obj.get("content"))
        return ""


def thinking_requested(body: JSON) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def error_body(status: int, code: str, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message, "code": code}})


class AnthropicKind(NativeKind):
    """Messages API bodies carry system, messages and tools as OpenAI's do, so the prompt text for
    estimates is read the OpenAI way (`input_text` is inherited)."""

    name: ClassVar[str] = "anthropic"
    openai_ops = frozenset({"chat/completions"})

    def is_openai_path(self, path: str) -> bool:
        return openai.openai_endpoint(path) is not None

    def shape_native(
        self, provider: ProviderConfig, path: str, body: JSON | None, headers: Sequence[tuple[str, str]]
    ) -> Call:
        model = common.body_model(body)
        stream = bool(body and body.get("stream") is True)
        call = Call(provider, endpoint_for_path(path), model, model, stream, body=body, path=path)
        call.thinking = body is not None and thinking_requested(body)
        return call

    def upstream_request(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes
    ) -> UpstreamRequest:
        if openai.is_openai_call(call):
            return openai.bearer_request(call, method, query, headers, raw_body, ("x-api-key",))
        hdrs = common.with_credential(
            call.provider, headers, "x-api-key", call.provider.api_key or None, ("authorization",)
        )
        common.set_default_headers(hdrs, [("anthropic-version", API_VERSION)])
        return common.build(call, method, query, hdrs, raw_body)

    def native_meter(self, status: int, content_type: str) -> Meter:
        return FrameMeter(MessagesReader(), status)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return error_body(status, code, message)

    def stream_error(self, code: str, message: str) -> bytes:
        return sse_data(self.error_body(502, code, message), b"error")  # the SDK raises on `event: error`
