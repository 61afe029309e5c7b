"""A newcomer's first minutes: the shipped config, no provider key, the README's curl to `demo`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import duckdb

from tests.support.process import GatewayProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_serves_the_demo_model_and_stores_the_event(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "pricing").symlink_to(REPO / "pricing")
    port = free_port()
    env = {k: "" for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DASHSCOPE_API_KEY")}
    proc = GatewayProcess(["serve", "--config", "config.yaml", "--port", str(port)], cwd=tmp_path, env=env)
    proc.env["PYTHONPATH"] = str(REPO)
    proc.start(f"http://127.0.0.1:{port}/readyz")
    try:
        out = subprocess.run(
            ["curl", "-s", "-i", f"http://127.0.0.1:{port}/v1/chat/completions",
             "-H", "content-type: application/json", "-H", "X-Tenant-Id: newcomer",
             "-d", '{"model": "demo", "messages": [{"role": "user", "content": "Hello, Meterway"}]}'],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
    finally:
        assert proc.terminate() == 0
    head, _, body = out.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 200")
    assert "x-meterway-cost:" in head.lower()
    reply = json.loads(body)
    assert reply["choices"][0]["message"]["content"]
    with duckdb.connect(str(tmp_path / "data" / "meterway.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT tenant_id, provider, model, usage_source, pricing_status, total_cost > 0 FROM llm_usage_events"
        ).fetchall()
    assert rows == [("newcomer", "demo", "gpt-4o-mini", "provider", "priced", True)]
