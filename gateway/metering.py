"""From what a request did to its event: usage source, estimation, pricing.

Pure functions of data (no I/O), so the rules for `usage_source`, model choice for pricing and
cost fields are testable without a server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from gateway.attribution import Attribution
from gateway.estimate import count_prompt, count_tokens
from gateway.providers.base import FREE_ENDPOINTS, Call, Meter, MeterReport, ProviderKind
from gateway.usage import Usage
from pricing.pricer import EventPricing, candidates
from storage.event import UsageEvent

log = logging.getLogger("meterway.metering")


@dataclass(slots=True)
class Outcome:
    """How the exchange ended, as the proxy saw it."""

    status: int
    error_type: str | None = None
    error_message: str | None = None
    reached_upstream: bool = False  # the request was sent and the provider may bill it
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    attribution: Attribution = field(default_factory=Attribution)


def decide_usage(
    kind: ProviderKind, call: Call, meter: Meter | None, report: MeterReport, outcome: Outcome
) -> tuple[Usage, str]:
    """The usage to record and its source: the provider's report (its parts cut to their wholes), an
    estimate, or none."""
    if report.usage is not None:
        usage = report.usage
        reported = (usage.cached_input_tokens, usage.cache_write_tokens, usage.reasoning_tokens)
        if usage.clamp_parts():
            log.debug(
                "%s reported parts larger than their wholes (cached %d, cache write %d of %d input; reasoning %d of "
                "%d output); recorded as cut to them", call.provider.name, *reported[:2], usage.input_tokens,
                reported[2], usage.output_tokens,
            )  # fmt: skip
        return usage, "provider"
    upstream_ok = outcome.status < 400 or outcome.error_type in ("client_disconnect", "stream_error", "timeout",
                                                                  "shutdown")  # fmt: skip
    if not (outcome.reached_upstream and upstream_ok) or call.endpoint in FREE_ENDPOINTS:
        return Usage(), "none"
    if report.error is not None and not (meter is not None and meter.output_text()):
        return Usage(), "none"  # an error inside a 2xx before any output: the provider refused it, as with a 4xx
    known = report.input_usage
    if known is not None:  # the input as the provider counted it; only the output is estimated
        usage = replace(known, output_tokens=0, reasoning_tokens=0)
    else:
        usage = Usage(input_tokens=count_prompt(kind.input_text(call.body), call.body))
    if meter is not None:
        usage.output_tokens = count_tokens(meter.output_text())
    return usage, "estimated"


def build_event(
    request_id: str,
    ts: datetime,
    call: Call,
    kind: ProviderKind,
    meter: Meter | None,
    outcome: Outcome,
    pricer: EventPricing,
    report: MeterReport | None = None,
) -> UsageEvent:
    if report is None:
        report = meter.report() if meter is not None else MeterReport()
    usage, source = decide_usage(kind, call, meter, report, outcome)
    model = report.model or call.model_upstream
    attr = outcome.attribution
    event = UsageEvent(
        request_id=request_id,
        ts=ts,
        provider=call.provider.name,
        endpoint=call.endpoint,
        model_requested=call.model_requested,
        model=model,
        stream=call.stream,
        status_code=outcome.status,
        duration_ms=outcome.duration_ms,
        ttft_ms=outcome.ttft_ms,
        tenant_id=attr.tenant_id,
        user_id=attr.user_id,
        feature=attr.feature,
        session_id=attr.session_id,
        tags=attr.tags,
        error_type=outcome.error_type,
        error_message=outcome.error_message,
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        total_tokens=usage.total_tokens,
        usage_source=source,
        reporting_currency=pricer.reporting_currency,
    )
    names = candidates(model, call.model_upstream, call.model_requested)
    event.thinking = thinking = call.thinking or usage.reasoning_tokens > 0 or report.thinking
    event.service_tier = tier = report.service_tier or tier_asked(call)
    priced = pricer.price_event(
        usage, provider=call.provider.pricing_provider, models=names, at=ts, thinking=thinking,
        tenant=attr.tenant_id, service_tier=tier,
    )  # fmt: skip
    event.set_price(priced)
    return event


def tier_asked(call: Call) -> str | None:
    """The service tier the request asked for, when the answer did not say which it got (a cut stream)."""
    tier = call.body.get("service_tier") if call.body else None
    return tier if isinstance(tier, str) and tier not in ("auto", "default") else None
