"""Scripted upstream behaviours for the proxy tests (aiohttp handlers)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}


def chunk(content: str | None = None, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    obj: dict[str, Any] = dict(CHUNK)
    if usage is not None and content is None and finish is None:
        obj["choices"] = []
        obj["usage"] = usage
    else:
        delta = {"content": content} if content is not None else {}
        obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        obj["usage"] = usage
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there!"}, "finish_reason": "stop"}],
    "usage": USAGE,
}


async def chat(request: web.Request) -> web.StreamResponse:
    """An OpenAI-like chat endpoint that honours stream and stream_options.include_usage."""
    raw = await request.read()
    body = json.loads(raw) if raw else {}
    if not body.get("stream"):
        return web.json_response(COMPLETION)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for word in ("Hi", " there", "!"):
        await resp.write(chunk(word))
    await resp.write(chunk(finish="stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(chunk(usage=USAGE))
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def stream_without_usage(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for word in ("Hello", " world", ", how", " are", " you"):
        await resp.write(chunk(word))
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def reset_mid_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(chunk("partial"))
    await resp.write(chunk(" answer"))
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return resp


async def reset_mid_ndjson(request: web.Request) -> web.StreamResponse:
    """Ollama's native chat stream, broken off in the middle of a line."""
    resp = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
    await resp.prepare(request)
    line = {"model": "llama3.2", "message": {"role": "assistant", "content": "partial"}, "done": False}
    await resp.write(json.dumps(line).encode() + b"\n" + b'{"model": "llama3.2", "mess')
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return resp


async def hang_before_headers(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(30)
    return web.json_response(COMPLETION)


async def slow_stream(request: web.Request) -> web.StreamResponse:
    """Streams a word every 50 ms for a long time (for client disconnects)."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for _ in range(400):
        await resp.write(chunk("tick "))
        await asyncio.sleep(0.05)
    return resp


async def server_error(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "The server had an error", "type": "server_error"}}, status=500)


async def malformed_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"data: {not json at all\n\n")
    await resp.write(chunk("ok"))
    await resp.write(b'data: {"choices": [}\n\n: comment\n\nevent: ping\ndata:\n\n')
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def error_after_content(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(chunk("some text"))
    await resp.write(b'data: {"error": {"message": "overloaded mid-stream", "type": "server_error"}}\n\n')
    return resp


async def overcached(request: web.Request) -> web.StreamResponse:
    """A completion whose usage claims more cached tokens than input tokens."""
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 50},
    }
    return web.json_response({**COMPLETION, "usage": usage})


async def echo(request: web.Request) -> web.StreamResponse:
    """Returns what it received, as a chat completion whose content is the request headers."""
    body = dict(COMPLETION)
    body["echo"] = {"headers": dict(request.headers), "query": request.query_string}
    return web.json_response(body)


ALL = {
    "chat": chat,
    "nousage": stream_without_usage,
    "reset": reset_mid_stream,
    "ndjsonreset": reset_mid_ndjson,
    "hang": hang_before_headers,
    "slow": slow_stream,
    "error500": server_error,
    "malformed": malformed_sse,
    "errorafter": error_after_content,
    "echo": echo,
    "overcached": overcached,
}


async def paced(request: web.Request) -> web.StreamResponse:
    """Ten words 100 ms apart, then usage: a stream that is in flight for about a second."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for _ in range(10):
        await resp.write(chunk("word "))
        await asyncio.sleep(0.1)
    await resp.write(chunk(usage=USAGE))
    await resp.write(b"data: [DONE]\n\n")
    return resp


ALL["paced"] = paced


async def slow_chat(request: web.Request) -> web.StreamResponse:
    """The non-streaming chat answer after 300 ms: requests sent together are in flight together."""
    await asyncio.sleep(0.3)
    return web.json_response(COMPLETION)


ALL["slowchat"] = slow_chat


async def dated_model(request: web.Request) -> web.StreamResponse:
    """The chat answer naming a dated model the price book does not know (priced by the name sent upstream)."""
    return web.json_response({**COMPLETION, "model": "gpt-4o-mini-2099-01-01"})


ALL["dated"] = dated_model


async def error_in_200(request: web.Request) -> web.StreamResponse:
    """An error object instead of a completion, with HTTP 200 (as some OpenAI-compatible servers answer)."""
    return web.json_response({"error": {"message": "the engine is overloaded", "type": "server_error"}})


ALL["error200"] = error_in_200


async def html_page(request: web.Request) -> web.StreamResponse:
    """A 200 HTML page where a completion should be (a proxy or a login page in the way)."""
    return web.Response(text="<html><body>Please sign in</body></html>", content_type="text/html")


ALL["html"] = html_page
