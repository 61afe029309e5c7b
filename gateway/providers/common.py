"""Pieces shared by the provider kinds: header handling, body serialization, text extraction.

Only mechanisms live here; no provider's quirk does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.providers.base import JSON, Call, ProviderConfig, UpstreamRequest

ID_LENGTH = 24  # a path segment this long is an object id even without a digit
_VERSION = re.compile(r"v\d+(?:[a-z]+\d*)?")  # an API version (`v1`, `v1beta`, `v2alpha1`), not an id


def join_url(base_url: str, path: str, query: str = "") -> str:
    url = base_url.rstrip("/") + "/" + path.lstrip("/") if path else base_url
    return f"{url}?{query}" if query else url


def with_credential(
    provider: ProviderConfig,
    headers: list[tuple[str, str]],
    name: str,
    value: str | None,
    also_drop: tuple[str, ...] = (),
) -> list[tuple[str, str]]:
    """The client's headers with the provider's credential and static headers applied.

    With a configured key, any client credential header (`name` and `also_drop`) is replaced;
    without one, the client's own credential passes through unchanged.
    """
    out = headers
    if value is not None:
        drop = {name.lower(), *(h.lower() for h in also_drop)}
        out = [(k, v) for k, v in headers if k.lower() not in drop]
        out.append((name, value))
    if provider.headers:
        static = {k.lower() for k in provider.headers}
        out = [(k, v) for k, v in out if k.lower() not in static]
        out.extend(provider.headers.items())
    return out


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The value of a header, by case-insensitive name, or None."""
    lower = name.lower()
    return next((v for k, v in headers if k.lower() == lower), None)


def set_default_headers(headers: list[tuple[str, str]], defaults: Iterable[tuple[str, str]]) -> None:
    """Add each default header the client did not send."""
    present = {k.lower() for k, _ in headers}
    headers.extend((k, v) for k, v in defaults if k.lower() not in present)


def body_bytes(call: Call, raw_body: bytes) -> bytes:
    if call.body_changed and call.body is not None:
        return orjson.dumps(call.body)
    return raw_body


def build(call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes) -> UpstreamRequest:
    return UpstreamRequest(
        method, join_url(call.provider.base_url, call.path, query), headers, body_bytes(call, raw_body)
    )


_TEXT_KEYS = ("text", "content", "input", "arguments", "thinking", "reasoning_content", "reasoning", "tool_calls")


def path_parts(path: str) -> list[str]:
    """A pass-through path's segments with object ids (any segment holding a digit, or a long one: `batch_6a1f`,
    `file-abc123`, a model name like `gpt-4o`) read as `{id}`, so endpoint names, and the metric labels drawn
    from them, name the kind of call and stay few however many objects a client touches."""
    return ["{id}" if (len(part) >= ID_LENGTH or any(c.isdigit() for c in part)) and not _VERSION.fullmatch(part)
            else part for part in path.strip("/").split("/") if part]  # fmt: skip


def text_of(value: Any) -> str:
    """All human text in a content value: strings, lists of parts, nested `text`/`content` fields."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (text_of(v) for v in value) if t)
    if isinstance(value, dict):
        parts = [text_of(value.get(k)) for k in _TEXT_KEYS]
        fn = value.get("function")
        if isinstance(fn, dict):
            parts.append(str(fn.get("name") or ""))
            parts.append(text_of(fn.get("arguments")))
        return "\n".join(p for p in parts if p)
    return ""


def get_path(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def body_model(body: JSON | None) -> str | None:
    """The request body's `model`, when it is a string."""
    model = body.get("model") if body else None
    return model if isinstance(model, str) else None


def loads(data: bytes) -> Any:
    """Parse JSON, or None when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def error_message(obj: JSON) -> str | None:
    """The message of an error object in any of the usual shapes, or None."""
    err = obj.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or err.get("type") or "error")
    if isinstance(err, str) and err:
        return err
    return None


_REASONING = re.compile(rb'"reasoning(?:_content)?"\s*:\s*"(?!")')


def reasoning_seen(data: bytes) -> bool:
    """The payload carries reasoning text (`reasoning_content` or `reasoning`, not empty): the model ran in
    thinking mode, which a hybrid model prices apart even when its usage reports no reasoning tokens."""
    return b'"reasoning' in data and _REASONING.search(data) is not None
