"""The `openai` kind: OpenAI and every API that copies it (DashScope compatible mode, Hunyuan's and
Gemini's OpenAI endpoints, DeepSeek, Moonshot, Groq, OpenRouter, vLLM, Ollama's /v1).

Usage may sit at the top level, in `choices[0].usage` or in `x_groq.usage`, and is read from the
last chunk that reports it (running totals are never summed). Streams without
`stream_options.include_usage` get it injected, and the usage-only chunk that this adds is
removed from what the client receives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from gateway.providers import common
from gateway.providers.base import (
    JSON,
    Call,
    GatewayError,
    Meter,
    MeterReport,
    ProviderConfig,
    UpstreamRequest,
    sse_data,
)
from gateway.providers.sse import SSEDecoder, SSEEvent, events_around
from gateway.usage import Usage, as_int

_ENDPOINTS = {
    "chat/completions": "chat.completions",
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
}
OPENAI_ENDPOINTS = frozenset(_ENDPOINTS.values())
_USAGE_STREAM_ENDPOINTS = ("chat.completions", "completions")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_TEXT_CAP = 8 << 20  # bytes of stream payload kept for estimation; past it the text is truncated


def openai_endpoint(path: str) -> str | None:
    """The endpoint of a path ending in an OpenAI operation (`v1/chat/completions`), else None."""
    clean = path.strip("/")
    for suffix, name in _ENDPOINTS.items():
        if clean == suffix or clean.endswith("/" + suffix):
            return name
    return None


def endpoint_for_path(path: str) -> str:
    """`v1/chat/completions` -> `chat.completions`; unknown paths keep their shape with dots."""
    name = openai_endpoint(path)
    if name is not None:
        return name
    parts = common.path_parts(path)
    if parts[:1] == ["v1"]:
        parts = parts[1:]
    return ".".join(parts) or "root"


def usage_from(u: Any) -> Usage | None:
    """Normalize an OpenAI-style usage object (chat, completions, embeddings or responses)."""
    if not isinstance(u, dict):
        return None
    pd = u.get("prompt_tokens_details") or u.get("input_tokens_details")
    cd = u.get("completion_tokens_details") or u.get("output_tokens_details")
    usage = Usage(
        input_tokens=as_int(u["prompt_tokens"] if "prompt_tokens" in u else u.get("input_tokens")),
        output_tokens=as_int(u["completion_tokens"] if "completion_tokens" in u else u.get("output_tokens")),
        cached_input_tokens=as_int(
            (pd.get("cached_tokens") if isinstance(pd, dict) else None)
            or u.get("prompt_cache_hit_tokens")
            or u.get("cached_tokens")
        ),
    )
    if isinstance(pd, dict) and pd:
        usage.cache_write_tokens = as_int(
            pd.get("cache_write_tokens") or pd.get("cache_creation_tokens") or pd.get("cache_creation_input_tokens")
        )
    if isinstance(cd, dict) and cd:
        usage.reasoning_tokens = as_int(cd.get("reasoning_tokens"))
    total = u.get("total_tokens")
    usage.add_hidden_reasoning(as_int(total) if total is not None else None)
    return usage


def find_usage(obj: JSON) -> Usage | None:
    """Usage wherever an OpenAI-compatible chunk puts it; found in several places, it counts once."""
    usage = usage_from(obj.get("usage"))  # where nearly every response has it: looked at first, alone
    if usage is not None:
        return usage
    for candidate in (
        common.get_path(obj, "x_groq", "usage"),
        _first_choice(obj).get("usage"),
        common.get_path(obj, "response", "usage"),  # responses API: response.completed
    ):
        usage = usage_from(candidate)
        if usage is not None:
            return usage
    return None


def _first_choice(obj: JSON) -> JSON:
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _tier_of(obj: JSON) -> str | None:
    tier = obj.get("service_tier") or common.get_path(obj, "response", "service_tier")
    return tier if isinstance(tier, str) and tier else None


def _model_of(obj: JSON) -> str | None:
    model = obj.get("model") or common.get_path(obj, "response", "model")
    return model if isinstance(model, str) and model else None


def _error_of(obj: JSON, event: str = "") -> str | None:
    msg = common.error_message(obj)
    if msg:
        return msg
    kind = obj.get("type")
    if kind in ("error", "response.failed") or event == "error":
        err = common.get_path(obj, "response", "error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or "response failed")
        return str(obj.get("message") or obj.get("code") or kind or "error")
    return None


def _may_matter(pending: bytes, chunk: bytes) -> bool:
    """Whether the events ending in `pending + chunk` could carry usage or an error (a bytes scan)."""
    window = pending + chunk if pending else chunk
    return _has_usage(window) or any(marker in window for marker in _OTHER_MARKERS)


_USAGE = b'"usage"'
_OTHER_MARKERS = (b"error", b"response.failed")


def _usage_offsets(data: bytes) -> list[int]:
    """Offsets of every `"usage"` key in `data` whose value is not null (`"usage":null` says none yet)."""
    found = []
    pos = data.find(_USAGE)
    while pos >= 0:
        end = pos + len(_USAGE)
        if not data[end : end + 8].replace(b" ", b"").startswith(b":null"):
            found.append(pos)
        pos = data.find(_USAGE, end)
    return found


def _cut(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    parts, at = [], 0
    for start, end in spans:
        parts.append(data[at:start])
        at = end
    parts.append(data[at:])
    return b"".join(parts)


def _has_usage(data: bytes) -> bool:
    return _USAGE in data and bool(_usage_offsets(data))


class JSONBodyMeter:
    """A whole JSON body, parsed once at the end by `parse(obj) -> MeterReport`. With `expects_json` (an
    endpoint that only answers JSON), a successful answer that is not a JSON object is the provider's
    error (an HTML page from a proxy in the way, say), not a completion to estimate and bill."""

    def __init__(self, status: int, parse: Any, expects_json: bool = False) -> None:
        self._status = status
        self._chunks: list[bytes] = []
        self._parse = parse
        self._report = MeterReport()
        self._obj: Any = None
        self._expects_json = expects_json and status < 400

    def feed(self, chunk: bytes) -> bytes:
        self._chunks.append(chunk)
        return chunk

    def finish(self) -> bytes:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = [body]
        self._obj = common.loads(body) if body else None
        if isinstance(self._obj, dict):
            self._report = self._parse(self._obj, self._status)
        elif self._expects_json:
            self._report = MeterReport(error=f"the provider answered {self._status} with a body that is not JSON")
        return b""

    def report(self) -> MeterReport:
        return self._report

    def output_text(self) -> str:
        return response_text(self._obj) if isinstance(self._obj, dict) else ""


def response_text(obj: JSON) -> str:
    """The generated text of a whole response: chat message, completion text or responses output."""
    choice = _first_choice(obj)
    if choice:
        return common.text_of(choice.get("message")) or str(choice.get("text") or "")
    return common.text_of(obj.get("output"))


def parse_json_body(obj: JSON, status: int) -> MeterReport:
    error = _error_of(obj) if status < 400 else None
    if status < 400 and obj.get("status") == "failed":  # responses API
        error = error or "response failed"
    message = _first_choice(obj).get("message")
    reasoning = isinstance(message, dict) and any(
        isinstance(text := message.get(key), str) and text for key in ("reasoning_content", "reasoning")
    )
    return MeterReport(usage=find_usage(obj), model=_model_of(obj), error=error, service_tier=_tier_of(obj),
                       thinking=reasoning)  # fmt: skip


class SSEMeter:
    """OpenAI-style SSE: scans each event for usage and errors, parsing only events that carry them."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        self._decoder = SSEDecoder()
        self._strip = strip_usage_chunk
        self._usage: Usage | None = None
        self._model: str | None = None
        self._error: str | None = None
        self._tier: str | None = None
        self._reasoning = False
        self._raw: list[bytes] = []  # the relayed bytes, for estimating usage if none is reported
        self._kept = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._kept < _TEXT_CAP:
            self._raw.append(chunk)
            self._kept += len(chunk)
        may_matter = self._model is None or _may_matter(self._decoder.pending, chunk)
        complete = self._decoder.skip(chunk)  # the complete events so far, none of them parsed yet
        if not self._reasoning and complete:
            self._reasoning = common.reasoning_seen(complete)
        if may_matter and complete:
            dropped = [(a, b) for a, b, ev in events_around(complete, self._decoder.separator, self._marks(complete))
                       if not self._read(ev)]  # fmt: skip
            if self._strip and dropped:
                return _cut(complete, dropped)
        return complete if self._strip else chunk

    def _marks(self, region: bytes) -> list[int]:
        """Offsets in `region` of whatever may be usage, an error or (until known) the model."""
        marks = [0] if self._model is None else []
        marks += _usage_offsets(region)
        for marker in _OTHER_MARKERS:
            pos = region.find(marker)
            while pos >= 0:
                marks.append(pos)
                pos = region.find(marker, pos + len(marker))
        return marks

    def finish(self) -> bytes:
        events = self._decoder.finish()
        if not self._strip:
            for ev in events:
                self._read(ev)
            return b""
        return b"".join([ev.raw for ev in events if self._read(ev)])

    def _read(self, ev: SSEEvent) -> bool:
        """Meter one event; False when it is the injected usage-only chunk to remove."""
        data = ev.data
        if not data or data == b"[DONE]":
            if ev.event == "error":
                self._error = self._error or "stream error"
            return True
        usage_here = _has_usage(data)
        if not (
            usage_here
            or self._model is None
            or ev.event == "error"
            or b'"error"' in data
            or b'"response.failed"' in data
        ):
            return True
        obj = common.loads(data)
        if not isinstance(obj, dict):
            if ev.event == "error":
                self._error = self._error or data.decode("utf-8", "replace")[:500]
            return True
        self._model = _model_of(obj) or self._model
        err = _error_of(obj, ev.event)
        if err:
            self._error = err
        if usage_here:
            usage = find_usage(obj)
            if usage is not None:
                self._usage = usage
                self._tier = _tier_of(obj) or self._tier
                if self._strip and obj.get("choices") == [] and not err:  # an error in it reaches the client
                    return False
        return True

    def report(self) -> MeterReport:
        return MeterReport(usage=self._usage, model=self._model, error=self._error, service_tier=self._tier,
                           thinking=self._reasoning)  # fmt: skip

    def output_text(self) -> str:
        parts: list[str] = []
        decoder = SSEDecoder()
        events = [ev for chunk in self._raw for ev in decoder.feed(chunk)] + decoder.finish()
        for ev in events:
            obj = common.loads(ev.data) if ev.data else None
            if not isinstance(obj, dict):
                continue
            if isinstance(obj.get("delta"), str):  # responses API text deltas
                parts.append(obj["delta"])
            for choice in obj.get("choices") or ():
                if isinstance(choice, dict):
                    parts.append(common.text_of(choice.get("delta")) or str(choice.get("text") or ""))
        return "".join(parts)


def error_body(status: int, code: str, message: str, param: str | None = None) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def request_text(body: JSON | None) -> str:
    """Prompt text of an OpenAI-style request (chat messages, prompt, input, instructions, tools)."""
    if not body:
        return ""
    parts = [common.text_of(body.get(k)) for k in ("messages", "prompt", "input", "instructions", "system")]
    tools = body.get("tools")
    if tools:
        parts.append(orjson.dumps(tools).decode())
    return "\n".join(p for p in parts if p)


def thinking_requested(body: JSON) -> bool:
    """Thinking mode as the OpenAI-compatible APIs spell it (DashScope, Hunyuan, DeepSeek, Moonshot)."""
    if body.get("enable_thinking") is True:
        return True
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "auto")


def shape_call(provider: ProviderConfig, path: str, body: JSON | None) -> Call:
    """The Call for an OpenAI-style request to `{base_url}/{path}`, with stream usage asked for."""
    endpoint = endpoint_for_path(path)
    model = common.body_model(body)
    stream = bool(body and body.get("stream") is True)
    call = Call(provider, endpoint, model, model, stream, body=body, path=path)
    if body is not None:
        call.thinking = thinking_requested(body)
        _inject_stream_usage(call, body)
    return call


def shape_openai_call(provider: ProviderConfig, op: str, body: JSON, model_upstream: str, prefix: str = "") -> Call:
    """A `/v1/{op}` request sent to `{base_url}/{prefix}{op}`, its model rewritten to `model_upstream`."""
    if op not in _ENDPOINTS:
        raise GatewayError(404, "not_found", f"unknown endpoint /v1/{op}")
    call = shape_call(provider, prefix + op, body)
    if model_upstream != call.model_requested:
        body["model"] = model_upstream
        call.body_changed = True
    call.model_upstream = model_upstream
    return call


def _inject_stream_usage(call: Call, body: JSON) -> None:
    if not (call.stream and call.endpoint in _USAGE_STREAM_ENDPOINTS and call.provider.inject_stream_usage):
        return
    opts = body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") is True:
        return
    body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    call.strip_usage_chunk = True
    call.body_changed = True


def is_openai_call(call: Call) -> bool:
    """True when the call is on an OpenAI-compatible endpoint (whichever kind's provider serves it)."""
    return call.endpoint in OPENAI_ENDPOINTS


def bearer_request(
    call: Call,
    method: str,
    query: str,
    headers: list[tuple[str, str]],
    raw_body: bytes,
    also_drop: tuple[str, ...] = (),
) -> UpstreamRequest:
    """The upstream request with the provider's key as `Authorization: Bearer`."""
    key = call.provider.api_key
    hdrs = common.with_credential(call.provider, headers, "Authorization", f"Bearer {key}" if key else None, also_drop)
    return common.build(call, method, query, hdrs, raw_body)


def new_meter(call: Call, status: int, content_type: str) -> Meter:
    if content_type.startswith("text/event-stream"):
        return SSEMeter(call.strip_usage_chunk and status < 400)
    return JSONBodyMeter(status, parse_json_body, expects_json=call.endpoint in OPENAI_ENDPOINTS)


class OpenAIKind:
    name: ClassVar[str] = "openai"
    openai_prefix: ClassVar[str] = ""  # where the provider serves OpenAI's API, under its base URL
    openai_ops: ClassVar[frozenset[str] | None] = None  # the `/v1/{op}` it serves, when not all of them

    def shape_openai(self, provider: ProviderConfig, op: str, body: JSON, model_upstream: str) -> Call:
        if self.openai_ops is not None and op not in self.openai_ops:
            raise GatewayError(400, "unsupported_endpoint", f"provider {provider.name!r} does not serve /v1/{op}")
        return shape_openai_call(provider, op, body, model_upstream, prefix=self.openai_prefix)

    def shape_raw(
        self,
        provider: ProviderConfig,
        method: str,
        path: str,
        body: JSON | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Call:
        return shape_call(provider, path, body)

    def upstream_request(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes
    ) -> UpstreamRequest:
        return bearer_request(call, method, query, headers, raw_body)

    def new_meter(self, call: Call, status: int, content_type: str) -> Meter:
        return new_meter(call, status, content_type)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return error_body(status, code, message)

    def stream_error(self, code: str, message: str) -> bytes:
        return sse_data(self.error_body(502, code, message))  # the SDK raises on a data object holding `error`

    def input_text(self, body: JSON | None) -> str:
        return request_text(body)
