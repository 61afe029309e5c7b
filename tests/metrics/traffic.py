"""A gateway config over the built-in demo provider, and the mixed traffic the metrics tests send.

Three demo providers (one that never gets stream usage, so its streams are estimated), a priced and
an unpriced model, several tenants and features (more than the label policies keep, so `other`
appears), streams and non-streams, forced upstream 500s and unknown models.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

DEMO = "http://demo.invalid/v1"
CONFIG: dict[str, Any] = {
    "providers": {
        "demo-a": {"kind": "demo", "base_url": DEMO, "price_as": "openai"},
        "demo-b": {"kind": "demo", "base_url": DEMO, "price_as": "openai"},
        "demo-est": {"kind": "demo", "base_url": DEMO, "price_as": "openai", "inject_stream_usage": False},
    },
    "models": [
        {"name": "gpt-4o-mini", "provider": "demo-a"},
        {"name": "mystery-model", "provider": "demo-a"},
        {"name": "gpt-4o", "provider": "demo-b"},
        {"name": "gpt-4.1-mini", "provider": "demo-est"},
    ],
    "metrics": {
        "tenant_label": {"mode": "top_n", "top_n": 2},
        "feature_label": {"mode": "allow_list", "allow": ["chat", "search"]},
        "user_label": {"mode": "none"},
    },
}


@dataclass(frozen=True)
class Call:
    model: str
    stream: bool = False
    tenant: str | None = "acme"
    feature: str | None = "chat"
    error: int | None = None


WAVE = (
    Call("gpt-4o-mini"),
    Call("gpt-4o-mini", stream=True, tenant="globex", feature="search"),
    Call("gpt-4o", tenant="globex"),
    Call("gpt-4o", stream=True, feature="search"),
    Call("gpt-4o", error=500, tenant="initech"),
    Call("gpt-4.1-mini", stream=True, tenant="initech", feature="summarize"),
    Call("gpt-4.1-mini", tenant=None, feature=None),
    Call("mystery-model", feature="search"),
    Call("mystery-model", stream=True, tenant="globex", feature="translate"),
    Call("gpt-4o-mini", error=500, stream=True),
    Call("no-such-model", tenant="globex"),
)


def send(client: httpx.Client, base: str, call: Call) -> httpx.Response:
    headers = {}
    if call.tenant:
        headers["x-tenant-id"] = call.tenant
    if call.feature:
        headers["x-feature"] = call.feature
    if call.error:
        headers["x-demo-error"] = str(call.error)
    body = {"model": call.model, "max_tokens": 6, "stream": call.stream,
            "messages": [{"role": "user", "content": f"hello from {call.tenant}"}]}  # fmt: skip
    return client.post(f"{base}/v1/chat/completions", json=body, headers=headers)


def send_wave(client: httpx.Client, base: str) -> list[int]:
    return [send(client, base, call).status_code for call in WAVE]


class Traffic:
    """Sends waves to a gateway from a thread until stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.waves = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                send_wave(client, self.base)
                self.waves += 1
