"""A live gateway's governance schedule, driven by tests: its clock, its passes, its metrics.

`started()` builds a `LiveGateway`, loads synthetic history straight into its store, sets the
schedule's interval (and clock) so nothing waits for real time, and starts it. `settle()` waits for
more passes of the schedule and for every notification they started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.governance_jobs import GovernanceJobs
from storage.event import UsageEvent
from tests.support.gateway import LiveGateway

SECRET_ENV, SECRET = "MW_TEST_HOOK_SECRET", "hook-secret"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def gateway_doc(hook_url: str | None = None, events: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": [{"name": "gpt-4.1", "provider": "openai"}],
        **extra,
    }
    if hook_url is not None:
        doc["notifications"] = [{"name": "hook", "kind": "webhook", "url": hook_url, "secret_env": SECRET_ENV,
                                 "events": list(events)}]  # fmt: skip
    return doc


def jobs_of(gw: LiveGateway) -> GovernanceJobs:
    governance = gw.app.gateway.governance
    assert governance is not None and governance.jobs is not None
    return governance.jobs


def started(
    tmp: Path, doc: dict[str, Any], history: Sequence[UsageEvent] = (), clock: Clock | None = None
) -> LiveGateway:
    gw = LiveGateway.from_doc(tmp, doc)
    if history:
        gw.app.gateway.sink.load_events(history)
    jobs = jobs_of(gw)
    jobs.interval = 0.1
    if clock is not None:
        jobs.clock = clock
    return gw.start()


def wait_until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def settle(gw: LiveGateway, passes: int) -> None:
    """Wait for `passes` more passes of the schedule, then for every delivery they started."""
    jobs = jobs_of(gw)
    target = jobs.runs + passes
    wait_until(lambda: jobs.runs >= target)
    governance = gw.app.gateway.governance
    assert governance is not None
    gw.run(governance.dispatcher.drain())


def metric(gw: LiveGateway, name: str, **labels: str) -> float | None:
    text = httpx.get(f"{gw.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
