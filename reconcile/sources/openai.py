"""OpenAI's organization usage and costs APIs, read with an admin key (`OPENAI_ADMIN_KEY`).

    GET /v1/organization/usage/{completions,embeddings,moderations,images,audio_speeches,
                                audio_transcriptions}
        ?start_time&end_time (Unix seconds, end exclusive)&bucket_width=1d|1h&limit
        &group_by=model&group_by=project_id&group_by=api_key_id&page
    GET /v1/organization/costs?start_time&end_time&bucket_width=1d&limit
        &group_by=line_item&group_by=project_id&page

Each answers `{object: "page", data: [{object: "bucket", start_time, end_time, results: [...]}],
has_more, next_page}`. Completions results carry `input_tokens` (cached included),
`input_cached_tokens`, `output_tokens` and `num_model_requests`; embeddings and moderations carry
input tokens and requests; images and audio carry requests only. `vector_stores` and
`code_interpreter_sessions` have no model, so their spend shows up through the costs' line items.
Costs come per day in `amount: {value, currency: "usd"}`; a line item reads "<model>, <kind>"
(like "gpt-4o-2024-08-06, input") when it is tied to a model, and is kept whole otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from reconcile.http import ReportingClient, Sleep
from reconcile.model import CostRow, ProviderData, UsageRow
from reconcile.settings import ClientOptions, ProviderSettings
from reconcile.sources.base import UsageSource, bucket_results, count, now, text

USAGE_ENDPOINTS = ("completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions")
GROUP_BY = ("model", "project_id", "api_key_id")
COST_GROUP_BY = ("line_item", "project_id")
LIMITS = {"1d": 31, "1h": 168}
COST_LIMIT = 180

REPORTED = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost")


class OpenAISource:
    name = "openai"
    currency = "USD"

    def __init__(self, client: ReportingClient, endpoints: tuple[str, ...] = USAGE_ENDPOINTS) -> None:
        self.client = client
        self.endpoints = endpoints

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, since: datetime, until: datetime, bucket_width: str) -> ProviderData:
        span = [("start_time", str(int(since.timestamp()))), ("end_time", str(int(until.timestamp())))]
        usage: list[UsageRow] = []
        for endpoint in self.endpoints:
            params = [*span, ("bucket_width", bucket_width), ("limit", str(LIMITS[bucket_width]))]
            params += [("group_by", g) for g in GROUP_BY]
            async for page in self.client.pages(f"/v1/organization/usage/{endpoint}", params):
                for bucket in page["data"]:
                    start = _start(bucket)
                    usage += [usage_row(endpoint, start, r) for r in bucket_results(bucket)]
        costs: list[CostRow] = []
        params = [*span, ("bucket_width", "1d"), ("limit", str(COST_LIMIT))]
        params += [("group_by", g) for g in COST_GROUP_BY]
        async for page in self.client.pages("/v1/organization/costs", params):
            for bucket in page["data"]:
                start = _start(bucket)
                costs += [row for r in bucket_results(bucket) if (row := cost_row(start, r)) is not None]
        return ProviderData(
            provider=self.name, since=since, until=until, bucket_width=bucket_width, fetched_at=now(),
            currency=self.currency, reported=REPORTED, cost_dimensions=("project",), usage=usage, costs=costs,
        )  # fmt: skip


def usage_row(endpoint: str, start: datetime, r: Mapping[str, Any]) -> UsageRow:
    return UsageRow(
        start=start,
        endpoint=endpoint,
        model=text(r, "model"),
        project=text(r, "project_id"),
        api_key=text(r, "api_key_id"),
        requests=count(r, "num_model_requests"),
        input_tokens=count(r, "input_tokens"),
        cached_input_tokens=count(r, "input_cached_tokens"),
        output_tokens=count(r, "output_tokens"),
    )


def cost_row(start: datetime, r: Mapping[str, Any]) -> CostRow | None:
    amount = r.get("amount")
    if not isinstance(amount, Mapping) or amount.get("value") is None:
        return None
    line_item = text(r, "line_item")
    model = line_item.split(", ", 1)[0] if line_item and ", " in line_item else None
    return CostRow(
        start=start,
        amount=Decimal(str(amount["value"])),
        currency=str(amount.get("currency") or "usd").upper(),
        model=model,
        project=text(r, "project_id"),
        api_key=text(r, "api_key_id"),
        line_item=line_item,
    )


def _start(bucket: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(bucket["start_time"]), UTC)


def build(
    settings: ProviderSettings,
    env: Mapping[str, str],
    options: ClientOptions,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
) -> UsageSource:
    client = ReportingClient.for_provider(
        "OpenAI",
        settings,
        env,
        options,
        lambda key: {"authorization": f"Bearer {key}"},
        transport=transport,
        sleep=sleep,
    )
    return OpenAISource(client)
