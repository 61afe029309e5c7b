"""Shared pieces of the provider tests: feeding a meter in pieces, building SSE bodies and calls."""

from __future__ import annotations

import random
from typing import Any

import orjson

from gateway.providers.base import Call, Meter, MeterReport, ProviderConfig
from gateway.providers.registry import KINDS


def provider(kind: str, **kw: Any) -> ProviderConfig:
    return ProviderConfig(name=kw.pop("name", kind), kind=kind, base_url=kw.pop("base_url", "https://up.example"), **kw)


def pieces(body: bytes, split: str, seed: int = 0) -> list[bytes]:
    """`whole`, `7` (fixed-size chunks) or `random` (random boundaries, seeded)."""
    if split == "whole":
        return [body]
    if split == "random":
        rng = random.Random(seed)
        out, i = [], 0
        while i < len(body):
            n = rng.randint(1, 97)
            out.append(body[i : i + n])
            i += n
        return out
    size = int(split)
    return [body[i : i + size] for i in range(0, len(body), size)]


def run(meter: Meter, body: bytes, split: str = "whole", seed: int = 0) -> tuple[bytes, MeterReport]:
    """Feed a body through a meter; the bytes it relayed and its report."""
    relayed = [meter.feed(p) for p in pieces(body, split, seed)]
    relayed.append(meter.finish())
    return b"".join(relayed), meter.report()


def sse(*events: Any, event: str | None = None, crlf: bool = False, space: bool = True) -> bytes:
    """An SSE body: each item is a payload (dict -> JSON) or an (event name, payload) pair."""
    blocks = []
    for item in events:
        name, payload = item if isinstance(item, tuple) else (event, item)
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        lines = ([f"event: {name}".encode()] if name else []) + [b"data:" + (b" " if space else b"") + data]
        blocks.append(b"\n".join(lines) + b"\n\n")
    body = b"".join(blocks)
    return body.replace(b"\n", b"\r\n") if crlf else body


def raw_call(kind: str, path: str, body: dict[str, Any] | None, **kw: Any) -> Call:
    headers = kw.pop("headers", ())
    return KINDS[kind].shape_raw(provider(kind, **kw), "POST", path, body, headers)


def metered(
    kind: str, call: Call, body: bytes, status: int = 200, ctype: str = "", split: str = "whole"
) -> MeterReport:
    return run(KINDS[kind].new_meter(call, status, ctype), body, split)[1]
