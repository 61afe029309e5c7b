"""SIGTERM and SIGINT: in-flight requests finish, every event is flushed, the process exits 0."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.gateway import scripts
from tests.support.gateway import write_config
from tests.support.process import GatewayProcess, free_port
from tests.support.upstream import Upstream

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_inflight_requests_finish_and_flushes_every_event(
    sig: int, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.scripts.update(scripts.ALL)
    port = free_port()
    db = tmp_path / "events.duckdb"
    cfg = write_config(tmp_path, {
        "server": {"port": port, "grace_seconds": 20},
        "storage": {"path": str(db), "flush_interval_ms": 5000},  # nothing is loaded before shutdown
        "providers": {"up": {"kind": "openai", "base_url": upstream.script_url("paced"), "price_as": "openai"}},
        "models": [{"name": "gpt-4o-mini", "provider": "up"}],
    })  # fmt: skip
    proc = GatewayProcess(["serve", "--config", str(cfg)], cwd=REPO, log=tmp_path / "gateway.log")
    proc.start(f"http://127.0.0.1:{port}/healthz")
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        for _ in range(3):  # finished before the signal
            assert httpx.post(url, json={**body, "stream": False}, timeout=30).status_code == 200
        started = threading.Barrier(6)
        results: list[bytes] = []

        def stream() -> None:
            with httpx.stream("POST", url, json=body, timeout=30) as r:
                pieces = r.iter_raw()
                first = next(pieces)
                started.wait(30)
                results.append(first + b"".join(pieces))

        threads = [threading.Thread(target=stream) for _ in range(5)]
        for t in threads:
            t.start()
        started.wait(30)  # every stream is in flight
        code = proc.terminate(sig)
        for t in threads:
            t.join(30)
    finally:
        proc.kill()
    assert code == 0, proc.log.read_text()
    assert len(results) == 5 and all(r.endswith(b"data: [DONE]\n\n") for r in results)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT count(*), count(DISTINCT request_id), sum(output_tokens) FROM llm_usage_events"
        ).fetchone()
    assert rows == (8, 8, 8 * 3)
    assert not list((tmp_path / "events.duckdb.journal").glob("*.jsonl")), "journal must be fully loaded"


def test_streams_cut_when_the_grace_period_ends_are_still_recorded(upstream: Upstream, tmp_path: Path) -> None:
    upstream.scripts.update(scripts.ALL)
    port = free_port()
    db = tmp_path / "events.duckdb"
    cfg = write_config(tmp_path, {
        "server": {"port": port, "grace_seconds": 1},
        "storage": {"path": str(db), "flush_interval_ms": 5000},
        "providers": {
            "up": {"kind": "openai", "base_url": upstream.script_url("slow"), "price_as": "openai"},
            "stuck": {"kind": "openai", "base_url": upstream.script_url("hang"), "price_as": "openai"},
        },
        "models": [{"name": "gpt-4o-mini", "provider": "up"}, {"name": "gpt-4o", "provider": "stuck"}],
    })  # fmt: skip
    proc = GatewayProcess(["serve", "--config", str(cfg)], cwd=REPO, log=tmp_path / "gateway.log")
    proc.start(f"http://127.0.0.1:{port}/healthz")
    ids: list[str] = []
    ends: list[bytes] = []
    whole: list[httpx.Response] = []
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        started = threading.Barrier(4)

        def stream() -> None:
            with contextlib.suppress(httpx.HTTPError), httpx.stream("POST", url, json=body, timeout=30) as r:
                ids.append(r.headers["x-meterway-request-id"])
                pieces = r.iter_raw()
                next(pieces)
                started.wait(30)
                ends.append(b"".join(pieces)[-400:])  # until the gateway cuts the stream

        def waiting() -> None:  # the provider has not answered when the grace period ends
            whole.append(httpx.post(url, json={**body, "model": "gpt-4o", "stream": False}, timeout=30))

        threads = [threading.Thread(target=stream) for _ in range(3)] + [threading.Thread(target=waiting)]
        for t in threads:
            t.start()
        started.wait(30)
        deadline = time.monotonic() + 30
        while not any(seen.path.endswith("/hang/chat/completions") for seen in upstream.requests):
            assert time.monotonic() < deadline, "the waiting request never reached the provider"
            time.sleep(0.01)
        code = proc.terminate(signal.SIGTERM)
        for t in threads:
            t.join(30)
    finally:
        proc.kill()
    log = proc.log.read_text()
    assert code == 0, log
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log
    # The cut streams end with an error event the SDKs raise on, not as if the answer were complete.
    assert len(ends) == 3 and all(b'"code":"gateway_shutting_down"' in end for end in ends), ends
    # The request still waiting on its provider gets a 503 in the API's format, with its request id.
    (cut,) = whole
    assert cut.status_code == 503 and cut.json()["error"]["code"] == "gateway_shutting_down"
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT request_id, status_code, error_type, usage_source, input_tokens, output_tokens "
            "FROM llm_usage_events"
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted([*ids, cut.headers["x-meterway-request-id"]]) and len(ids) == 3
    streams = [row for row in rows if row[0] in ids]
    for _, status, error_type, source, _, output in streams:
        assert (status, error_type, source) == (200, "shutdown", "estimated") and output >= 10  # 20 words a second
    (_, status, error_type, source, prompt, output) = next(row for row in rows if row[0] not in ids)
    assert (status, error_type, source, output) == (503, "shutdown", "estimated", 0) and prompt > 0  # it was sent
