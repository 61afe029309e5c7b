"""Building provider report pages and gateway events for the reconciliation tests.

Provider results start from the documented example objects (tests/fixtures/reconcile) with their
numbers, ids and models replaced, so every page the fake server sends has the documented shape.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent
from tests.reconcile.fake_reporting import fixture

AUG = [datetime(2025, 8, 1, tzinfo=UTC) + timedelta(days=i) for i in range(5)]
_ids = itertools.count()


def _template(name: str) -> dict[str, Any]:
    result: dict[str, Any] = fixture(name)["body"]["data"][0]["results"][0]
    return copy.deepcopy(result)


def openai_completions(
    model: str, project: str, key: str, requests: int, inp: int, cached: int, out: int
) -> dict[str, Any]:
    r = _template("openai_usage_completions.json")
    r.update(model=model, project_id=project, api_key_id=key, num_model_requests=requests, input_tokens=inp,
             input_cached_tokens=cached, output_tokens=out)  # fmt: skip
    return r


def openai_embeddings(model: str, project: str, key: str, requests: int, inp: int) -> dict[str, Any]:
    r = _template("openai_usage_embeddings_result_grouped.json")
    r.update(model=model, project_id=project, api_key_id=key, num_model_requests=requests, input_tokens=inp)
    return r


def openai_cost(value: float, line_item: str, project: str) -> dict[str, Any]:
    r = _template("openai_costs_result_grouped.json")
    r.update(amount={"value": value, "currency": "usd"}, line_item=line_item, project_id=project)
    return r


def openai_bucket(day: datetime, results: list[dict[str, Any]]) -> dict[str, Any]:
    start = int(day.timestamp())
    return {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}


def anthropic_usage(
    model: str, workspace: str, key: str, uncached: int, read: int, w5m: int, w1h: int, out: int
) -> dict[str, Any]:
    r = _template("anthropic_usage_messages.json")
    r.update(model=model, workspace_id=workspace, api_key_id=key, uncached_input_tokens=uncached,
             cache_read_input_tokens=read, output_tokens=out,
             cache_creation={"ephemeral_1h_input_tokens": w1h, "ephemeral_5m_input_tokens": w5m})  # fmt: skip
    return r


def anthropic_cost(cents: str, model: str | None, workspace: str, description: str) -> dict[str, Any]:
    r = _template("anthropic_cost_report.json")
    r.update(amount=cents, model=model, workspace_id=workspace, description=description)
    return r


def anthropic_bucket(day: datetime, results: list[dict[str, Any]]) -> dict[str, Any]:
    end = day + timedelta(days=1)
    return {"starting_at": _z(day), "ending_at": _z(end), "results": results}


def _z(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def event(day: datetime, model: str, provider: str = "openai", **fields: Any) -> UsageEvent:
    """A priced, provider-reported, successful event at noon of `day`; any field may be overridden."""
    n = next(_ids)
    values: dict[str, Any] = {
        "request_id": f"req-{n}", "ts": day + timedelta(hours=12, seconds=n), "provider": provider,
        "endpoint": "chat.completions", "model_requested": model, "model": model, "status_code": 200,
        "usage_source": "provider", "currency": "USD", "pricing_status": "priced", "reporting_currency": "USD",
    }  # fmt: skip
    values.update(fields)
    values["total_tokens"] = values.get("input_tokens", 0) + values.get("output_tokens", 0)
    if values.get("total_cost") is not None:
        values["total_cost"] = Decimal(values["total_cost"])
        values["cost_reporting"] = values["total_cost"]
    return UsageEvent(**values)


def store(path: Path, events: Iterable[UsageEvent]) -> Path:
    sink = DuckDBSink(path)
    try:
        sink.load_events(list(events))
    finally:
        sink.close()
    return path
