"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 in a thread, answering 200 to every POST.

`wait_for(n)` blocks until n requests have arrived (or fails after a timeout), so a test waits on
what it expects rather than on a fixed sleep.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class HookReceiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []  # headers, raw body
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._arrived:
                    receiver.received.append((dict(self.headers.items()), body))
                    receiver._arrived.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, name="test-hook", daemon=True)

    def __enter__(self) -> HookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 15) -> None:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.received) >= count, timeout), (
                f"expected {count} webhook requests within {timeout}s, got {len(self.received)}"
            )

    def documents(self) -> list[dict[str, Any]]:
        with self._arrived:
            return [orjson.loads(body) for _, body in self.received]
