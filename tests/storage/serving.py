"""`meterway serve` as a process group for the multi-process tests, and a load generator.

`ServeGroup` starts the gateway in a session of its own, so a test can SIGKILL the supervisor, the
store process and every worker at once (`kill_group`), and never touches other processes.
`Load` runs client threads that open a new connection per request (so the kernel spreads them
over the workers) and records the request id of every complete 200 answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import REPO, write_config
from tests.support.process import free_port

DEMO: dict[str, Any] = {
    "providers": {"demo": {"kind": "demo", "base_url": "http://demo.invalid/v1", "price_as": "openai"}},
    "models": [{"name": "demo", "provider": "demo", "model": "gpt-4o-mini"}],
}


def demo_config(folder: Path, storage: dict[str, Any]) -> tuple[Path, int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return write_config(folder, {**DEMO, "server": {"port": port}, "storage": storage}), port


class ServeGroup:
    def __init__(self, config: Path, port: int, workers: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.args = ["serve", "--config", str(config), "--workers", str(workers)]
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ServeGroup:
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServeGroup:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *self.args], cwd=REPO, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 60) -> ServeGroup:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready in {timeout}s:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_group(self) -> None:
        """SIGKILL the supervisor, the store process and every worker at once."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill_group()


class Load:
    """Client threads posting chat and embedding requests until stopped."""

    def __init__(self, urls: list[str], clients: int) -> None:
        self.urls = urls
        self.answered: list[str] = []
        self.failed = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < count:
            assert time.monotonic() < deadline, f"only {len(self.answered)} of {count} requests answered"
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        for t in self._threads:
            t.join(30)

    def _client(self, i: int) -> None:
        url = self.urls[i % len(self.urls)]
        chat = {"model": "demo", "messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 8}
        embed = {"model": "demo", "input": [f"text {i}"]}
        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection each time: any worker may take it
        with httpx.Client(base_url=url, timeout=10, limits=limits) as http:
            n = 0
            while not self.stopping.is_set():
                path, body = ("/v1/embeddings", embed) if n % 2 else ("/v1/chat/completions", chat)
                n += 1
                try:
                    r = http.post(path, json=body, headers={"x-tenant-id": f"t{i % 3}"})
                    r.json()  # a complete answer
                except (httpx.HTTPError, ValueError):
                    with self._lock:
                        self.failed += 1
                    continue
                if r.status_code == 200:
                    with self._lock:
                        self.answered.append(r.headers["x-meterway-request-id"])


def wait_until(check: Any, timeout: float = 30, every: float = 0.05, state: Any = None) -> Any:
    """Poll `check()` until it returns something truthy; that value is returned. `state()` explains a timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met in time{f': {state()}' if state else ''}"
            return value
        time.sleep(every)
