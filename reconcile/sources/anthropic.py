"""Anthropic's Admin API usage and cost reports, read with an admin key (`ANTHROPIC_ADMIN_KEY`).

    GET /v1/organizations/usage_report/messages?starting_at&ending_at (RFC 3339)
        &bucket_width=1d|1h&limit&group_by[]=model&group_by[]=workspace_id&group_by[]=api_key_id&page
    GET /v1/organizations/cost_report?starting_at&ending_at&bucket_width=1d&limit
        &group_by[]=workspace_id&group_by[]=description&page

Both send `x-api-key` and `anthropic-version` and answer `{data: [{starting_at, ending_at,
results: [...]}], has_more, next_page}`. Usage results split the input into
`uncached_input_tokens`, `cache_read_input_tokens` and `cache_creation: {ephemeral_5m_input_tokens,
ephemeral_1h_input_tokens}`; they are summed into `input_tokens` as SPEC.md counts it. No request
count is reported. Cost amounts are decimal strings in cents ("123.45" USD is $1.23); grouped by
`description`, each result names its `model` (null for costs not tied to one, like web search).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from reconcile.http import ReportingClient, Sleep
from reconcile.model import CostRow, ProviderData, UsageRow, parse_iso
from reconcile.settings import ClientOptions, ProviderSettings
from reconcile.sources.base import UsageSource, bucket_results, count, now, text

VERSION = "2023-06-01"
GROUP_BY = ("model", "workspace_id", "api_key_id")
COST_GROUP_BY = ("workspace_id", "description")
LIMITS = {"1d": 31, "1h": 168}
CENTS = Decimal(100)

REPORTED = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "cost")


class AnthropicSource:
    name = "anthropic"
    currency = "USD"

    def __init__(self, client: ReportingClient) -> None:
        self.client = client

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, since: datetime, until: datetime, bucket_width: str) -> ProviderData:
        span = [("starting_at", _rfc3339(since)), ("ending_at", _rfc3339(until))]
        params = [*span, ("bucket_width", bucket_width), ("limit", str(LIMITS[bucket_width]))]
        params += [("group_by[]", g) for g in GROUP_BY]
        usage: list[UsageRow] = []
        async for page in self.client.pages("/v1/organizations/usage_report/messages", params):
            for bucket in page["data"]:
                start = parse_iso(str(bucket["starting_at"]))
                usage += [usage_row(start, r) for r in bucket_results(bucket)]
        params = [*span, ("bucket_width", "1d"), ("limit", str(LIMITS["1d"]))]
        params += [("group_by[]", g) for g in COST_GROUP_BY]
        costs: list[CostRow] = []
        async for page in self.client.pages("/v1/organizations/cost_report", params):
            for bucket in page["data"]:
                start = parse_iso(str(bucket["starting_at"]))
                costs += [row for r in bucket_results(bucket) if (row := cost_row(start, r)) is not None]
        return ProviderData(
            provider=self.name, since=since, until=until, bucket_width=bucket_width, fetched_at=now(),
            currency=self.currency, reported=REPORTED, cost_dimensions=("project",), usage=usage, costs=costs,
        )  # fmt: skip


def usage_row(start: datetime, r: Mapping[str, Any]) -> UsageRow:
    creation = r.get("cache_creation")
    if isinstance(creation, Mapping):
        written = count(creation, "ephemeral_5m_input_tokens") + count(creation, "ephemeral_1h_input_tokens")
    else:  # the flat form some versions of the report use
        written = count(r, "cache_creation_5m_input_tokens") + count(r, "cache_creation_1h_input_tokens")
    read = count(r, "cache_read_input_tokens")
    return UsageRow(
        start=start,
        endpoint="messages",
        model=text(r, "model"),
        project=text(r, "workspace_id"),
        api_key=text(r, "api_key_id"),
        requests=None,
        input_tokens=count(r, "uncached_input_tokens") + read + written,
        cached_input_tokens=read,
        cache_write_tokens=written,
        output_tokens=count(r, "output_tokens"),
    )


def cost_row(start: datetime, r: Mapping[str, Any]) -> CostRow | None:
    if r.get("amount") is None:
        return None
    return CostRow(
        start=start,
        amount=Decimal(str(r["amount"])) / CENTS,
        currency=str(r.get("currency") or "USD").upper(),
        model=text(r, "model"),
        project=text(r, "workspace_id"),
        line_item=text(r, "description"),
    )


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    settings: ProviderSettings,
    env: Mapping[str, str],
    options: ClientOptions,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
) -> UsageSource:
    client = ReportingClient.for_provider(
        "Anthropic",
        settings,
        env,
        options,
        lambda key: {"x-api-key": key, "anthropic-version": VERSION},
        transport=transport,
        sleep=sleep,
    )
    return AnthropicSource(client)
