"""The bare pass-through the benchmark compares Meterway against: the same stack, no metering.

A plain ASGI app on uvicorn (uvloop + httptools) forwarding with aiohttp's client, the same
client Meterway uses; bodies relayed unchanged (JSON read whole, SSE chunk by chunk). No routing,
attribution, usage parsing, pricing or events.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:18100")
_DROP = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"accept-encoding"}
_DROP_RESPONSE = {b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"}
_session: list[aiohttp.ClientSession] = []


def session() -> aiohttp.ClientSession:
    if not _session:
        connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=120)
        skip = ("User-Agent", "Accept-Encoding", "Content-Type")
        _session.append(aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=skip))
    return _session[0]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _DROP]
    resp = await session().request(scope["method"], UPSTREAM + scope["path"], headers=headers, data=body,
                                   allow_redirects=False)  # fmt: skip
    out = [(k, v) for k, v in resp.raw_headers if k.lower() not in _DROP_RESPONSE]
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        async for chunk in resp.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        resp.release()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    data = await resp.read()
    resp.release()
    out.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": out})
    await send({"type": "http.response.body", "body": data, "more_body": False})
