"""The bare pass-throughs the benchmark compares Meterway against: no metering at all.

`app`, the floor: the issue's aiohttp-client floor, the same proxy as the shared peer benchmark's
`floor-aiohttp` (a Starlette route on uvicorn with uvloop + httptools, aiohttp as the upstream
client, JSON read whole, SSE relayed chunk by chunk through a `StreamingResponse`). Meterway's
ratio targets are against this one.

`raw_app`, floor-raw: the thinnest pass-through possible on the same server and client: a plain
ASGI callable with no framework. Reported next to it, so the cost of Starlette itself is visible.

`httpx_app`, floor-httpx: `app` with httpx as the client API on httpx-aiohttp's transport (the same
aiohttp connection pool under httpx's request and response models), so the cost of httpx's client
layer is visible: Meterway's upstream seam (gateway/upstream.py) talks to aiohttp without it.

No routing, attribution, usage parsing, pricing or events in any of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:18100")
_DROP = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"accept-encoding"}
_DROP_RESPONSE = {b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"}
_session: list[aiohttp.ClientSession] = []
_client: list[httpx.AsyncClient] = []


def session() -> aiohttp.ClientSession:
    if not _session:
        connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=120)
        skip = ("User-Agent", "Accept-Encoding", "Content-Type")
        _session.append(aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=skip))
    return _session[0]


async def proxy(request: Request) -> Response:
    body = await request.body()
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw if k not in _DROP]
    resp = await session().request(request.method, UPSTREAM + request.url.path, data=body, headers=headers,
                                   allow_redirects=False)  # fmt: skip
    out = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in _DROP_RESPONSE]
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        stream = StreamingResponse(
            resp.content.iter_any(), status_code=resp.status, background=BackgroundTask(resp.release)
        )
        stream.raw_headers.extend(out)
        return stream
    try:
        content = await resp.read()
    finally:
        resp.release()
    whole = Response(content, status_code=resp.status)
    whole.raw_headers.extend(out)
    return whole


def client() -> httpx.AsyncClient:
    if not _client:
        _client.append(httpx.AsyncClient(transport=AiohttpTransport(client=session), timeout=None))
    return _client[0]


async def proxy_httpx(request: Request) -> Response:
    body = await request.body()
    headers = [(k, v) for k, v in request.headers.raw if k not in _DROP]
    upstream = client().build_request(request.method, UPSTREAM + request.url.path, content=body, headers=headers)
    resp = await client().send(upstream, stream=True)
    out = [(k.lower(), v) for k, v in resp.headers.raw if k.lower() not in _DROP_RESPONSE]
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        stream = StreamingResponse(
            resp.aiter_raw(), status_code=resp.status_code, background=BackgroundTask(resp.aclose)
        )
        stream.raw_headers.extend(out)
        return stream
    try:
        content = await resp.aread()
    finally:
        await resp.aclose()
    whole = Response(content, status_code=resp.status_code)
    whole.raw_headers.extend(out)
    return whole


@contextlib.asynccontextmanager
async def _lifespan(_: Starlette) -> AsyncIterator[None]:
    yield
    if _client:
        await _client.pop().aclose()
    if _session:
        await _session.pop().close()


app = Starlette(routes=[Route("/{path:path}", proxy, methods=["GET", "POST"])], lifespan=_lifespan)
httpx_app = Starlette(routes=[Route("/{path:path}", proxy_httpx, methods=["GET", "POST"])], lifespan=_lifespan)


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
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
