"""Usage metered elsewhere: validate records, price them with the gateway's book, turn them into events.

Used by `meterway ingest FILE.jsonl` and `POST /v1/usage`. A record is a JSON object in the
event's vocabulary (`input_tokens`, `ts`, ...) or seed 004's (`prompt_tokens`, `completion_tokens`,
`timestamp`, `latency_ms`, `host`); see `FIELDS`. Each bad record is rejected on its own with a
message naming the field, and reported with its line number or index; the good ones still go in.

A record without `request_id` gets one derived from its content, its time and its position among
identical records of the same batch, so ingesting the same file twice stores its usage once. A
record with neither `request_id` nor `ts` is timed on arrival and is therefore always new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gateway.usage import Usage
from pricing.pricer import EventPricing
from storage.event import UsageEvent
from storage.timerange import QueryError, parse_time

_STR = ("provider", "model", "model_requested", "tenant_id", "user_id", "feature", "session_id", "api_key_id",
        "endpoint", "error_type", "service_tier")  # fmt: skip
_TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
ALIASES = {"timestamp": "ts", "prompt_tokens": "input_tokens", "completion_tokens": "output_tokens",
           "latency_ms": "duration_ms"}  # fmt: skip
FIELDS = frozenset({*_STR, *_TOKENS, *ALIASES, "request_id", "ts", "total_tokens", "usage_source", "status_code",
                    "duration_ms", "ttft_ms", "stream", "tags", "host", "thinking"})  # fmt: skip
MAX_FUTURE = timedelta(hours=1)


@dataclass(slots=True)
class Rejected:
    where: int  # line number (files) or index (request bodies)
    message: str


@dataclass(slots=True)
class Batch:
    events: list[UsageEvent] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # line or index of each event
    rejected: list[Rejected] = field(default_factory=list)


class UsageIngestor:
    def __init__(
        self, pricer: EventPricing, price_as: Mapping[str, str] | None = None, not_before: datetime | None = None
    ) -> None:
        self.pricer = pricer
        self.price_as = dict(price_as or {})  # configured provider name -> its price book name
        self.not_before = not_before  # the store's retention watermark
        self._seen: dict[str, int] = {}  # content digest -> how many identical records so far

    def build(self, records: Iterable[tuple[int, Any]], now: datetime | None = None) -> Batch:
        """Validate and price `(position, record)` pairs; a record may be an `Invalid` from `read_jsonl`."""
        now = now or datetime.now(UTC)
        batch = Batch()
        seen = self._seen
        for where, record in records:
            if isinstance(record, Invalid):
                batch.rejected.append(Rejected(where, record.message))
                continue
            problems: list[str] = []
            event = self._event(record, now, problems)
            if event is None or problems:
                batch.rejected.append(Rejected(where, "; ".join(problems)))
                continue
            if not event.request_id:
                timed = record.get("ts") or record.get("timestamp")
                content = record if timed else {**record, "ts": event.ts.isoformat()}
                digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]
                seen[digest] = seen.get(digest, -1) + 1
                event.request_id = f"ext-{digest}" + (f"-{seen[digest]}" if seen[digest] else "")
            batch.events.append(event)
            batch.positions.append(where)
        return batch

    def _event(self, record: Any, now: datetime, problems: list[str]) -> UsageEvent | None:
        if not isinstance(record, dict):
            problems.append(f"expected a JSON object, got {type(record).__name__}")
            return None
        data: dict[str, Any] = {}
        for key, value in record.items():
            if key not in FIELDS:
                problems.append(f"{key}: unknown field (expected fields like provider, model, input_tokens, ts)")
                continue
            name = ALIASES.get(str(key), str(key))
            if name in data:
                problems.append(f"{key}: given twice (as {name} and as an alias of it)")
            data[name] = value
        for name in ("provider", "model"):
            if not data.get(name):
                problems.append(f"{name}: required (a non-empty string)")
        for name in _STR:
            if data.get(name) is not None and not (isinstance(data[name], str) and data[name]):
                problems.append(f"{name}: expected a non-empty string, got {data[name]!r}")
        counts = {name: _count(name, data.get(name, 0), problems) for name in _TOKENS}
        ts = self._ts(data.get("ts"), now, problems)
        usage = Usage(**counts)
        _check_usage(usage, data.get("total_tokens"), problems)
        source = data.get("usage_source", "provider")
        if source not in ("provider", "estimated"):
            problems.append(f"usage_source: expected 'provider' or 'estimated', got {source!r}")
        status = data.get("status_code", 200)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            problems.append(f"status_code: expected an HTTP status from 100 to 599, got {status!r}")
        tags = _tags(data.get("tags"), data.get("host"), problems)
        duration = _millis("duration_ms", data.get("duration_ms", 0), problems)
        ttft = _millis("ttft_ms", data.get("ttft_ms"), problems)
        for flag in ("stream", "thinking"):
            if not isinstance(data.get(flag, False), bool):
                problems.append(f"{flag}: expected true or false, got {data[flag]!r}")
        request_id = data.get("request_id")
        if request_id is not None and not (isinstance(request_id, str) and 0 < len(request_id) <= 200):
            problems.append(f"request_id: expected a string of 1 to 200 characters, got {request_id!r}")
        if problems or ts is None:
            return None
        event = UsageEvent(
            request_id=request_id or "", ts=ts, provider=data["provider"], endpoint=data.get("endpoint") or "ingest",
            model_requested=data.get("model_requested") or data["model"], model=data["model"],
            stream=bool(data.get("stream", False)), status_code=status, duration_ms=duration or 0.0, ttft_ms=ttft,
            tenant_id=data.get("tenant_id"), user_id=data.get("user_id"), feature=data.get("feature"),
            session_id=data.get("session_id"), api_key_id=data.get("api_key_id"), tags=tags,
            error_type=data.get("error_type"), input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens, reasoning_tokens=usage.reasoning_tokens,
            total_tokens=usage.total_tokens, usage_source=source, reporting_currency=self.pricer.reporting_currency,
        )  # fmt: skip
        models = tuple(dict.fromkeys((event.model or "", event.model_requested or "")))
        event.thinking = bool(data.get("thinking")) or usage.reasoning_tokens > 0
        event.service_tier = data.get("service_tier")
        priced = self.pricer.price_event(
            usage, provider=self.price_as.get(data["provider"], data["provider"]), models=models, at=ts,
            thinking=event.thinking, tenant=event.tenant_id, service_tier=event.service_tier,
        )  # fmt: skip
        event.set_price(priced)
        return event

    def _ts(self, value: Any, now: datetime, problems: list[str]) -> datetime | None:
        if value is None:
            return now
        if not isinstance(value, str):
            problems.append(f"ts: expected an ISO 8601 time like 2025-03-01T12:00:00Z, got {value!r}")
            return None
        try:
            ts = parse_time("ts", value, now)
        except QueryError as exc:
            problems.append(exc.message)
            return None
        if ts > now + MAX_FUTURE:
            problems.append(f"ts: {value} is in the future")
            return None
        if self.not_before is not None and ts < self.not_before:
            horizon = self.not_before.isoformat()
            problems.append(f"ts: {value} is before {horizon}, where storage.retention_days has dropped raw events")
            return None
        return ts


def _count(name: str, value: Any, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"{name}: expected a non-negative integer, got {value!r}")
        return 0
    return value


def _millis(name: str, value: Any, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        problems.append(f"{name}: expected a non-negative number of milliseconds, got {value!r}")
        return None
    return float(value)


def _check_usage(usage: Usage, total: Any, problems: list[str]) -> None:
    if usage.cached_input_tokens + usage.cache_write_tokens > usage.input_tokens:
        problems.append("cached_input_tokens + cache_write_tokens: must not exceed input_tokens (they are part of it)")
    if usage.reasoning_tokens > usage.output_tokens:
        problems.append("reasoning_tokens: must not exceed output_tokens (they are part of it)")
    if total is not None and total != usage.total_tokens:
        problems.append(f"total_tokens: {total!r} is not input_tokens + output_tokens ({usage.total_tokens})")


def _tags(tags: Any, host: Any, problems: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if tags is not None:
        if not isinstance(tags, dict) or not all(isinstance(v, (str, int, float, bool)) for v in tags.values()):
            problems.append("tags: expected an object of names to strings")
        else:
            out.update({str(k): str(v) for k, v in tags.items()})
    if host is not None:
        if not isinstance(host, dict):
            problems.append("host: expected an object")
        else:
            out.update(_flatten("host", host))
    return out


def _flatten(prefix: str, value: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(f"{prefix}.{key}", item))
        elif item is not None:
            out[f"{prefix}.{key}"] = str(item)
    return out


@dataclass(frozen=True, slots=True)
class Invalid:
    message: str


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, record or Invalid) for each non-blank line of a JSONL file."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, Invalid(f"not valid JSON: {exc}")
