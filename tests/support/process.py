"""Running `meterway` as a real process for tests, and waiting on it by readiness, not by sleeping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        command: list[str] | None = None,  # what runs `meterway`: by default this checkout's `gateway.cli`
    ) -> None:
        self.args = args
        self.command = command or [sys.executable, "-m", "gateway.cli"]
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = log or cwd / "gateway.log"

    def start(self, ready_url: str, timeout: float = 60) -> GatewayProcess:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*self.command, *self.args], cwd=self.cwd, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready in {timeout}s:\n{self.log.read_text()}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
