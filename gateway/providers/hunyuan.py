"""The `hunyuan` kind: Tencent Hunyuan's native Tencent Cloud API v3 (`ChatCompletions`).

Requests are POSTed to the base URL itself (https://hunyuan.tencentcloudapi.com), the action named
in `X-TC-Action`, with PascalCase bodies (`Model`, `Messages`, `Stream`). With `secret_id` and
`secret_key` configured the gateway signs each request (TC3-HMAC-SHA256); without them the client's
own signature and `X-TC-*` headers pass through untouched. Usage is `Response.Usage` in PascalCase
(some bodies come without the `Response` wrapper); a stream repeats running totals in every chunk,
so the last one wins. Errors come inside HTTP 200: `Response.Error`, or `ErrorMsg` in a stream.

Hunyuan's OpenAI-compatible API is on another host (https://api.hunyuan.cloud.tencent.com/v1):
OpenAI-shaped traffic goes to a provider of kind `openai` configured with that URL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from gateway.providers import common, tc3
from gateway.providers.base import JSON, Call, GatewayError, Meter, ProviderConfig, UpstreamRequest, sse_data
from gateway.providers.frames import FrameMeter, RunningTotalsReader
from gateway.usage import Usage, as_int

SERVICE = "hunyuan"
API_VERSION = "2023-09-01"
DEFAULT_ACTION = "ChatCompletions"
_SIGNATURE_HEADERS = ("authorization", "x-tc-timestamp", "x-tc-token", "content-type")


def _response(obj: JSON) -> JSON:
    inner = obj.get("Response")
    return inner if isinstance(inner, dict) else obj


def usage_from(u: JSON) -> Usage:
    usage = Usage(input_tokens=as_int(u.get("PromptTokens")), output_tokens=as_int(u.get("CompletionTokens")))
    total = u.get("TotalTokens")
    usage.add_hidden_reasoning(as_int(total) if total is not None else None)
    return usage


class ChatCompletionsReader(RunningTotalsReader):
    usage_marker: ClassVar[bytes] = b'"Usage"'
    error_markers: ClassVar[tuple[bytes, ...]] = (b'"Error',)  # `Error` and a stream's `ErrorMsg`

    def usage_of(self, obj: JSON) -> Usage | None:
        usage = _response(obj).get("Usage")
        return usage_from(usage) if isinstance(usage, dict) else None

    def error_of(self, obj: JSON) -> str | None:
        response = _response(obj)
        error = response.get("Error") or response.get("ErrorMsg")
        if not isinstance(error, dict):
            return None
        code, message = error.get("Code"), error.get("Message") or error.get("Msg")
        return f"{code}: {message}" if code and message else str(code or message or "error")

    def text_of(self, obj: JSON) -> str:
        choices = _response(obj).get("Choices")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
            return ""
        part = choices[0].get("Delta") or choices[0].get("Message")
        if not isinstance(part, dict):
            return ""
        return str(part.get("ReasoningContent") or "") + str(part.get("Content") or "")


def action_for(body: JSON | None, headers: Sequence[tuple[str, str]]) -> str:
    action = common.header(headers, "X-TC-Action")
    if action:
        return action
    if body and ("Input" in body or "InputList" in body):
        return "GetEmbedding"
    return DEFAULT_ACTION


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    parts = [str(message.get("Content") or "")]
    parts.extend(str(c.get("Text") or "") for c in message.get("Contents") or () if isinstance(c, dict))
    return "\n".join(p for p in parts if p)


def request_text(body: JSON | None) -> str:
    if not body:
        return ""
    parts = [_message_text(m) for m in body.get("Messages") or ()]
    parts.extend(str(x) for x in (body.get("Input"), *(body.get("InputList") or ())) if x)
    if body.get("Tools"):
        parts.append(orjson.dumps(body["Tools"]).decode())
    return "\n".join(p for p in parts if p)


def error_body(status: int, code: str, message: str) -> bytes:
    error = {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}
    return orjson.dumps({"Response": error})


class HunyuanKind:
    name: ClassVar[str] = "hunyuan"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def shape_openai(self, provider: ProviderConfig, op: str, body: JSON, model_upstream: str) -> Call:
        raise GatewayError(
            400,
            "unsupported_endpoint",
            f"provider {provider.name!r} speaks Tencent Cloud API v3, not /v1/{op}; configure Hunyuan's "
            "OpenAI-compatible endpoint https://api.hunyuan.cloud.tencent.com/v1 as a provider of kind 'openai'",
        )

    def shape_raw(
        self,
        provider: ProviderConfig,
        method: str,
        path: str,
        body: JSON | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Call:
        model = body.get("Model") if body and isinstance(body.get("Model"), str) else None
        stream = bool(body and body.get("Stream") is True)
        endpoint = "hunyuan." + action_for(body, headers)
        return Call(provider, endpoint, model, model, stream, body=body, path=path)

    def upstream_request(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes
    ) -> UpstreamRequest:
        provider = call.provider
        hdrs = list(headers)
        if provider.secret_id and provider.secret_key:
            hdrs = self._signed(call, method, query, hdrs, common.body_bytes(call, raw_body))
        defaults = [("X-TC-Action", call.endpoint.removeprefix("hunyuan.")), ("X-TC-Version", API_VERSION)]
        if provider.region:
            defaults.append(("X-TC-Region", provider.region))
        common.set_default_headers(hdrs, defaults)
        hdrs = common.with_credential(provider, hdrs, "Authorization", None)
        return common.build(call, method, query, hdrs, raw_body)

    def _signed(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> list[tuple[str, str]]:
        """The headers with the client's signature replaced by one made with the provider's secret."""
        provider = call.provider
        assert provider.secret_id and provider.secret_key
        timestamp = int(self._clock())
        auth = tc3.authorization(
            provider.secret_id,
            provider.secret_key,
            service=SERVICE,
            host=urlsplit(provider.base_url).netloc,
            timestamp=timestamp,
            payload=body,
            method=method,
            query=query,
        )
        out = [(k, v) for k, v in headers if k.lower() not in _SIGNATURE_HEADERS]
        out += [("Authorization", auth), ("Content-Type", "application/json"), ("X-TC-Timestamp", str(timestamp))]
        return out

    def new_meter(self, call: Call, status: int, content_type: str) -> Meter:
        return FrameMeter(ChatCompletionsReader(), status)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return error_body(status, code, message)

    def stream_error(self, code: str, message: str) -> bytes:
        return sse_data(self.error_body(502, code, message))

    def input_text(self, body: JSON | None) -> str:
        return request_text(body)
