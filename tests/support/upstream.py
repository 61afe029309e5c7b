"""A real HTTP upstream on 127.0.0.1 for tests: replays recorded transcripts and scripted failures.

It runs aiohttp's server on its own event loop in a thread, so the gateway under test talks to it
over real sockets. Every request it receives is kept in `requests` for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def load_fixture(name: str) -> dict[str, Any]:
    path = FIXTURES / "wire" / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def sse_pieces(body: str) -> list[bytes]:
    """Split a transcript at event boundaries (keeping separators), to send it event by event."""
    raw = body.encode()
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in raw:
            parts = raw.split(sep)
            out = [p + sep for p in parts[:-1]]
            if parts[-1]:
                out.append(parts[-1])
            return out
    return [raw]


@dataclass
class Upstream:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    scripts: dict[str, Handler] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fixture_url(self, name: str) -> str:
        return f"{self.url}/fx/{name}"

    def script_url(self, name: str) -> str:
        return f"{self.url}/script/{name}"

    def start(self) -> Upstream:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="test-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("test upstream did not start")
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/fx/{fixture}", self._replay)
        app.router.add_route("*", "/fx/{fixture}/{tail:.*}", self._replay)
        app.router.add_route("*", "/script/{name}/{tail:.*}", self._script)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)  # type: ignore[union-attr]
        fut.result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        self._loop.close()

    async def _record(self, request: web.Request) -> None:
        body = await request.read()
        self.requests.append(Seen(request.method, request.path, request.query_string, dict(request.headers), body))

    async def _replay(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        fx = load_fixture(request.match_info["fixture"])
        ctype = fx["headers"].get("content-type")
        if not fx["stream"] or fx["status"] >= 400:
            headers = {"content-type": ctype} if ctype else {}
            return web.Response(status=fx["status"], body=fx["body"].encode(), headers=headers)
        resp = web.StreamResponse(status=fx["status"])
        if ctype:
            resp.headers["content-type"] = ctype
        else:
            resp.headers["content-type"] = ""
        await resp.prepare(request)
        for piece in sse_pieces(fx["body"]):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def _script(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        handler = self.scripts.get(request.match_info["name"])
        if handler is None:
            return web.Response(status=599, text="no such script")
        return await handler(request)
