"""A real Prometheus for tests: Debian's /usr/bin/prometheus on 127.0.0.1 with a temporary data dir.

The config is the shipped dashboards/prometheus/prometheus.yml with the test's targets, the rule
files at absolute paths, and 1 s scrape and evaluation intervals. `start()` waits for /-/ready;
`stop()` ends the process it started, by its pid.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.metrics.artifacts import PROMETHEUS, RULE_FILES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusServer:
    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        assert Path(binary).exists(), "prometheus is missing: install Debian's prometheus package (.ci/run does)"
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(self._config(targets)))
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def _config(self, targets: dict[str, str]) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
        doc["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
        doc["rule_files"] = [str(p) for p in RULE_FILES]
        template = doc["scrape_configs"][0]
        doc["scrape_configs"] = [
            {**template, "job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ]
        return doc

    def start(self, timeout: float = 30) -> PrometheusServer:
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            assert self.proc.poll() is None, f"prometheus exited: {self.log()}"
            assert time.monotonic() < deadline, f"prometheus not ready after {timeout}s: {self.log()}"
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            return self.client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-4000:]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now; raises on a PromQL error."""
        r = self.client.get("/api/v1/query", params={"query": expr})
        body = r.json()
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def label_values(self, selector: str, label: str) -> set[str]:
        r = self.client.get("/api/v1/series", params={"match[]": selector})
        return {s[label] for s in r.json()["data"] if label in s}

    def get(self, path: str) -> Any:
        return self.client.get(path).json()["data"]

    def stop(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
