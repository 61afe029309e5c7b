"""A local stand-in for OpenAI's and Anthropic's reporting APIs: a real aiohttp server on 127.0.0.1.

It serves the documented response shapes (tests/fixtures/reconcile): buckets set per path are
filtered by the requested range and paginated `page_size` buckets at a time with opaque
`next_page` tokens; `raw` serves given bodies verbatim by page token. It checks the admin key
(`Authorization: Bearer` for OpenAI, `x-api-key` plus `anthropic-version` for Anthropic) and
answers a wrong one with the providers' documented 401 bodies; `fail` queues error answers (such
as a 429 with `retry-after`) for a path. Every request is recorded. It runs in its own thread, so
synchronous tests (the command line) and asynchronous ones can both use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reconcile"
OPENAI_KEY = "sk-admin-test-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-admin01-test-0123456789"


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


class FakeReporting:
    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.buckets: dict[str, list[dict[str, Any]]] = {}
        self.raw: dict[str, dict[str | None, dict[str, Any]]] = {}
        self.fail: dict[str, list[tuple[int, dict[str, str], dict[str, Any]]]] = {}
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeReporting:
        self._thread.start()
        assert self._ready.wait(10), "the fake reporting server did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def queries(self, path: str) -> list[list[tuple[str, str]]]:
        return [q for p, q in self.requests if p == path]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.requests.append((path, list(request.query.items())))
        denied = _check_key(path, request)
        if denied is not None:
            return denied
        queued = self.fail.get(path)
        if queued:
            status, headers, payload = queued.pop(0)
            extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            return web.json_response(payload, status=status, headers=extra)
        page = request.query.get("page")
        if path in self.raw:
            return web.json_response(self.raw[path][page])
        buckets = [b for b in self.buckets.get(path, []) if _in_range(path, b, request.query)]
        start = int(page.removeprefix("page_")) if page else 0
        end = start + self.page_size
        more = end < len(buckets)
        body: dict[str, Any] = {
            "data": buckets[start:end],
            "has_more": more,
            "next_page": f"page_{end}" if more else None,
        }
        if path.startswith("/v1/organization/"):
            body = {"object": "page", **body}
        return web.json_response(body)


def _check_key(path: str, request: web.Request) -> web.Response | None:
    if path.startswith("/v1/organization/"):
        if request.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return web.json_response(fixture("openai_error_401_invalid_api_key.json")["body"], status=401)
        return None
    if request.headers.get("x-api-key") != ANTHROPIC_KEY or not request.headers.get("anthropic-version"):
        return web.json_response(fixture("anthropic_error_401_authentication.json")["body"], status=401)
    return None


def _in_range(path: str, bucket: dict[str, Any], query: Any) -> bool:
    if path.startswith("/v1/organization/"):
        start = int(bucket["start_time"])
        return int(query["start_time"]) <= start < int(query.get("end_time", 2**40))
    when = datetime.fromisoformat(bucket["starting_at"].replace("Z", "+00:00"))
    lo = datetime.fromisoformat(query["starting_at"].replace("Z", "+00:00"))
    hi = datetime.fromisoformat(query["ending_at"].replace("Z", "+00:00")) if "ending_at" in query else None
    return lo <= when and (hi is None or when < hi)
