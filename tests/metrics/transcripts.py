"""Usage events built offline from the recorded provider transcripts in tests/fixtures/wire/.

Each transcript is shaped into a call by its kind, fed through the kind's meter and priced with the
shipped price book, exactly as the proxy does it, so the metrics tests record realistic events:
cached and cache-write tokens, reasoning, estimated usage and upstream errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from gateway.attribution import Attribution
from gateway.config import Config
from gateway.costing import EventPricer
from gateway.metering import Outcome, build_event
from gateway.providers.registry import KINDS
from storage.event import UsageEvent
from tests.gateway.providers.helpers import provider, run
from tests.gateway.providers.test_wire_fixtures import WIRE, kinds_for, load, request_headers, url_path

NAMES = tuple(sorted(p.name for p in WIRE.glob("*.json")))
AT = datetime(2025, 10, 1, 12, tzinfo=UTC)


@cache
def pricer() -> EventPricer:
    return EventPricer.from_config(Config())


def transcript_event(name: str, tenant: str | None = "acme", feature: str | None = "chat") -> UsageEvent:
    fixture = load(name)
    kind_name = kinds_for(fixture)[0]
    kind = KINDS[kind_name]
    request = fixture["request"]
    body = dict(request) if isinstance(request, dict) else None
    config = provider(kind_name, name=fixture["provider"])
    call = kind.shape_raw(config, fixture["method"], url_path(fixture), body, request_headers(fixture))
    meter = kind.new_meter(call, fixture["status"], fixture["headers"].get("content-type", ""))
    _, report = run(meter, fixture["body"].encode("utf-8"))
    outcome = Outcome(
        status=fixture["status"],
        reached_upstream=True,
        duration_ms=1500.0,
        ttft_ms=250.0 if call.stream else None,
        attribution=Attribution(tenant_id=tenant, feature=feature),
    )
    if fixture["status"] >= 400 or report.error:
        outcome.error_type = "upstream_error"
    return build_event(f"req-{name}", AT, call, kind, meter, outcome, pricer())
