"""What the proxy reads from and writes into bodies, apart from metering: a raw pass-through request's JSON,
an upstream error's text, credentials scrubbed from an answer, and the error event that ends a stream cut
short."""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping
from typing import Any

import orjson

from gateway.providers.base import JSON, GatewayError, ProviderConfig, ProviderKind
from gateway.upstream import UpstreamResponse


def parse_raw(raw: bytes, scope: MutableMapping[str, Any]) -> JSON | None:
    """The JSON body of a raw pass-through request, or None when it has none."""
    if not raw:
        return None
    ctype = next((v for k, v in scope["headers"] if k == b"content-type"), b"application/json")
    if b"json" not in ctype:  # e.g. curl's default form type on a JSON object, as Ollama's own examples send
        if not raw.lstrip().startswith(b"{"):
            return None
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(raw)
            return body if isinstance(body, dict) else None
        return None
    return json_object(raw)


def json_object(raw: bytes) -> JSON:
    """A request body that must be a JSON object, or a 400 naming what it is instead (no provider API
    takes another JSON value as a request body)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_json", f"request body must be a JSON object, got a JSON {_kind(body)}")
    return body


def _kind(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def error_text(body: bytes) -> str:
    text = body[:2000].decode("utf-8", "replace")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text[:1000]
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:1000]
        if isinstance(err, str):
            return err[:1000]
        if obj.get("message"):
            return str(obj["message"])[:1000]
    return text[:1000]


def scrub(body: bytes, provider: ProviderConfig) -> bytes:
    """Never echo a configured credential back to a client, even when the upstream does."""
    for secret in (provider.api_key, provider.secret_key):
        if secret and len(secret) >= 8 and secret.encode() in body:
            body = body.replace(secret.encode(), b"***")
    return body


def broken_stream(
    api: ProviderKind, response: UpstreamResponse, what: str, sent: bytes = b"", code: str = "upstream_stream_broken"
) -> bytes:
    """The error event a stream cut short by its upstream ends with, in the format of the API the client
    called: SDKs raise on it (OpenAI's on a `data:` object holding `error`, Anthropic's on `event: error`,
    Ollama's on an NDJSON line holding `error`), where a stream that merely stopped would read as a complete
    answer. `sent` ends with the last bytes relayed (a line cut short is ended first). Other stream formats get
    nothing."""
    message = f"{what} in the middle of the stream; the answer is incomplete"
    if response.content_type.startswith("text/event-stream"):
        return api.stream_error(code, message)
    if response.content_type.startswith("application/x-ndjson"):
        cut = b"\n" if sent and not sent.endswith(b"\n") else b""
        return cut + api.error_body(502, code, message) + b"\n"
    return b""
