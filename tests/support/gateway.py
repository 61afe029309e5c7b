"""A live gateway for tests: the real app under uvicorn on 127.0.0.1, on its own loop in a thread.

`events()` flushes the writer and reads the stored rows from the real DuckDB file.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import yaml

from gateway.app import MeterwayApp, create_app
from gateway.config import Config, load_config
from storage.event import COLUMN_NAMES

REPO = Path(__file__).resolve().parent.parent.parent
T = TypeVar("T")


def write_config(tmp: Path, doc: dict[str, Any]) -> Path:
    doc = dict(doc)
    doc.setdefault("storage", {"path": str(tmp / "events.duckdb"), "flush_interval_ms": 50})
    doc.setdefault("pricing", {"book": str(REPO / "pricing" / "book"), "reporting_currency": "USD"})
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class LiveGateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        config.server.port = 0
        self.app: MeterwayApp = create_app(config)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, loop="asyncio", http="httptools",
                           lifespan="on", access_log=False, log_level="warning", server_header=False)
        )  # fmt: skip
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @classmethod
    def from_doc(cls, tmp: Path, doc: dict[str, Any]) -> LiveGateway:
        return cls(load_config(write_config(tmp, doc)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveGateway:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self.server.serve())
            finally:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.close()

        self._thread = threading.Thread(target=run, name="test-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(60)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the gateway's own loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def flush(self) -> None:
        assert self._loop is not None
        self.run(self.app.gateway.writer.flush())

    def events(self, where: str = "TRUE", params: list[Any] | None = None) -> list[dict[str, Any]]:
        self.flush()
        rows = self.app.gateway.sink.query(f"SELECT * FROM llm_usage_events WHERE {where} ORDER BY ts", params or [])
        return [dict(zip(COLUMN_NAMES, row, strict=True)) for row in rows]

    def event(self, request_id: str) -> dict[str, Any]:
        """The event of one request, waiting (bounded) until the writer has it."""
        return self.stored_events("request_id = ?", [request_id])[0]

    def stored_events(self, where: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """`events(where)`, waiting (bounded) until there is at least one."""
        deadline = time.monotonic() + 10
        while True:
            rows = self.events(where, params)
            if rows or time.monotonic() > deadline:
                assert rows, f"no event where {where} {params or ''}"
                return rows
            time.sleep(0.02)
