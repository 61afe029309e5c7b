"""The provider reporting clients against a real local HTTP server serving the documented shapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from reconcile.errors import AdminKeyError, MissingAdminKey, ProviderAPIError
from reconcile.model import ProviderData
from reconcile.settings import ClientOptions, ProviderSettings, Scope
from reconcile.sources import SOURCES
from tests.reconcile import world
from tests.reconcile.fake_reporting import ANTHROPIC_KEY, OPENAI_KEY, FakeReporting, fixture
from tests.reconcile.world import AUG

COMPLETIONS, EMBEDDINGS, COSTS = (
    "/v1/organization/usage/completions",
    "/v1/organization/usage/embeddings",
    "/v1/organization/costs",
)
MESSAGES, COST_REPORT = "/v1/organizations/usage_report/messages", "/v1/organizations/cost_report"
ENV = {"OPENAI_ADMIN_KEY": OPENAI_KEY, "ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY}
KEY_ENV = {"openai": "OPENAI_ADMIN_KEY", "anthropic": "ANTHROPIC_ADMIN_KEY"}


@pytest.fixture
def server() -> Iterator[FakeReporting]:
    fake = FakeReporting(page_size=2).start()
    yield fake
    fake.stop()


class Sleeps(list[float]):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


async def fetch(
    server: FakeReporting, provider: str, env: dict[str, str] = ENV, width: str = "1d", sleeps: Sleeps | None = None,
    retries: int = 3, since: datetime = AUG[0], until: datetime = AUG[4],
) -> ProviderData:  # fmt: skip
    settings = ProviderSettings(provider, server.url, KEY_ENV[provider], {provider: Scope()})
    options = ClientOptions(max_retries=retries, base_delay=0.5, max_delay=30.0, timeout=10.0)
    source = SOURCES[provider](settings, env, options, sleep=sleeps if sleeps is not None else Sleeps())
    try:
        return await source.fetch(since, until, width)
    finally:
        await source.aclose()


async def test_openai_follows_every_page_and_keeps_model_project_and_key(server: FakeReporting) -> None:
    b, c = world.openai_bucket, world.openai_completions
    server.buckets[COMPLETIONS] = [
        b(AUG[0], [c("gpt-4o-2024-08-06", "proj_a", "key_a", 10, 10000, 2000, 5000)]),
        b(AUG[1], [c("gpt-4o-2024-08-06", "proj_a", "key_a", 8, 8000, 0, 4000),
                   c("gpt-4o-mini-2024-07-18", "proj_b", "key_b", 3, 3000, 0, 300)]),
        b(AUG[2], []),  # an empty day
        b(AUG[3], [c("gpt-4o-2024-08-06", "proj_a", "key_a", 2, 2000, 0, 1000)]),
        b(AUG[4], [c("gpt-4o-2024-08-06", "proj_a", "key_a", 1, 1, 0, 1)]),  # past `until`: filtered out
    ]  # fmt: skip
    server.buckets[EMBEDDINGS] = [
        world.openai_bucket(AUG[0], [world.openai_embeddings("text-embedding-3-small", "proj_a", "key_a", 4, 800)])
    ]
    server.buckets[COSTS] = [
        world.openai_bucket(AUG[0], [world.openai_cost(0.02, "gpt-4o-2024-08-06, input", "proj_a")]),
        world.openai_bucket(AUG[1], [world.openai_cost(0.025, "web search tool calls", "proj_b")]),
        world.openai_bucket(AUG[2], []),
    ]

    data = await fetch(server, "openai")

    queries = server.queries(COMPLETIONS)
    assert [dict(q).get("page") for q in queries] == [None, "page_2"]  # 4 days in range, 2 buckets a page
    first = queries[0]
    assert ("start_time", str(int(AUG[0].timestamp()))) in first and ("end_time", str(int(AUG[4].timestamp()))) in first
    assert [v for k, v in first if k == "group_by"] == ["model", "project_id", "api_key_id"]
    assert ("bucket_width", "1d") in first and ("limit", "31") in first
    assert [v for k, v in server.queries(COSTS)[0] if k == "group_by"] == ["line_item", "project_id"]
    assert len(server.queries("/v1/organization/usage/audio_transcriptions")) == 1  # every usage endpoint is asked

    by_day = {(u.start, u.endpoint, u.model): u for u in data.usage}
    assert len(data.usage) == 5 and {u.start for u in data.usage} == {AUG[0], AUG[1], AUG[3]}
    first_day = by_day[(AUG[0], "completions", "gpt-4o-2024-08-06")]
    assert (first_day.project, first_day.api_key, first_day.requests) == ("proj_a", "key_a", 10)
    assert (first_day.input_tokens, first_day.cached_input_tokens, first_day.output_tokens) == (10000, 2000, 5000)
    assert by_day[(AUG[0], "embeddings", "text-embedding-3-small")].input_tokens == 800
    assert [(c.start, c.model, c.amount, c.currency, c.project) for c in data.costs] == [
        (AUG[0], "gpt-4o-2024-08-06", Decimal("0.02"), "USD", "proj_a"),
        (AUG[1], None, Decimal("0.025"), "USD", "proj_b"),
    ]
    assert data.costs[1].line_item == "web search tool calls"
    assert "cache_write_tokens" not in data.reported and "requests" in data.reported


async def test_openai_documented_examples_as_served(server: FakeReporting) -> None:
    page = fixture("openai_usage_completions.json")["body"]
    token = page["next_page"]
    server.raw[COMPLETIONS] = {None: page, token: {"object": "page", "data": [], "has_more": False, "next_page": None}}
    server.raw[COSTS] = {None: fixture("openai_costs.json")["body"]}

    data = await fetch(server, "openai")

    assert [dict(q).get("page") for q in server.queries(COMPLETIONS)] == [None, token]
    [row] = [u for u in data.usage if u.endpoint == "completions"]
    assert (row.start, row.model, row.project, row.api_key) == (datetime(2024, 11, 1, tzinfo=UTC), None, None, None)
    assert (row.requests, row.input_tokens, row.cached_input_tokens, row.output_tokens) == (5, 1000, 800, 500)
    [cost] = data.costs
    assert (cost.amount, cost.currency, cost.model, cost.line_item) == (Decimal("0.06"), "USD", None, None)


async def test_anthropic_documented_examples_as_served(server: FakeReporting) -> None:
    usage = fixture("anthropic_usage_messages.json")["body"]
    costs = fixture("anthropic_cost_report.json")["body"]
    last = {"data": [], "has_more": False, "next_page": None}
    server.raw[MESSAGES] = {None: usage, usage["next_page"]: last}
    server.raw[COST_REPORT] = {None: costs, costs["next_page"]: last}

    data = await fetch(server, "anthropic")

    first = server.queries(MESSAGES)[0]
    assert [v for k, v in first if k == "group_by[]"] == ["model", "workspace_id", "api_key_id"]
    assert ("starting_at", "2025-08-01T00:00:00Z") in first and ("ending_at", "2025-08-05T00:00:00Z") in first
    assert [v for k, v in server.queries(COST_REPORT)[0] if k == "group_by[]"] == ["workspace_id", "description"]
    assert [dict(q).get("page") for q in server.queries(MESSAGES)] == [None, usage["next_page"]]
    [row] = data.usage
    # input = uncached 1500 + cache read 200 + cache writes (5m 500 + 1h 1000), as SPEC.md counts it
    assert (row.input_tokens, row.cached_input_tokens, row.cache_write_tokens) == (3200, 200, 1500)
    assert (row.output_tokens, row.requests, row.model) == (500, None, "claude-sonnet-4-20250514")
    assert row.project == "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"
    [cost] = data.costs
    assert cost.amount == Decimal("1.2378912") and cost.currency == "USD"  # "123.78912" cents
    assert (cost.model, cost.line_item) == ("claude-sonnet-4-20250514", "Claude Sonnet 4 Usage - Input Tokens")
    assert "requests" not in data.reported and "cache_write_tokens" in data.reported


async def test_a_429_is_retried_after_what_retry_after_says(server: FakeReporting) -> None:
    error = fixture("anthropic_error_429_rate_limit.json")
    server.fail[MESSAGES] = [(429, error["headers"], error["body"])]
    server.buckets[MESSAGES] = [
        world.anthropic_bucket(AUG[0], [world.anthropic_usage("claude-x", "w", "k", 10, 0, 0, 0, 5)])
    ]
    sleeps = Sleeps()

    data = await fetch(server, "anthropic", sleeps=sleeps)

    assert sleeps == [2.0]
    assert len(server.queries(MESSAGES)) == 2
    assert [(u.model, u.input_tokens, u.output_tokens) for u in data.usage] == [("claude-x", 10, 5)]


async def test_without_retry_after_the_backoff_doubles_and_gives_up_when_bounded(server: FakeReporting) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    server.fail[COMPLETIONS] = [(429, {}, body)] * 2
    sleeps = Sleeps()
    await fetch(server, "openai", sleeps=sleeps)
    assert sleeps == [0.5, 1.0]

    server.fail[COMPLETIONS] = [(429, {}, body)] * 10
    sleeps = Sleeps()
    with pytest.raises(ProviderAPIError, match="still rate limited after 3 retries") as caught:
        await fetch(server, "openai", sleeps=sleeps, retries=3)
    assert caught.value.status == 429 and len(sleeps) == 3


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_wrong_admin_key_names_the_variable_and_never_shows_the_key(
    server: FakeReporting, provider: str
) -> None:
    wrong = "sk-admin-wrong-key-that-must-not-leak"
    with pytest.raises(AdminKeyError) as caught:
        await fetch(server, provider, env={KEY_ENV[provider]: wrong})
    message = str(caught.value)
    assert KEY_ENV[provider] in message and "HTTP 401" in message
    assert wrong not in message


async def test_a_key_without_permission_is_a_clear_403(server: FakeReporting) -> None:
    body = {"error": {"message": "Missing scopes: api.usage.read", "type": "invalid_request_error", "code": None}}
    server.fail[COMPLETIONS] = [(403, {}, body)]
    with pytest.raises(AdminKeyError, match=r"OPENAI_ADMIN_KEY \(HTTP 403: Missing scopes: api.usage.read\)"):
        await fetch(server, "openai")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_missing_admin_key_names_the_variable_before_any_request(server: FakeReporting, provider: str) -> None:
    with pytest.raises(MissingAdminKey, match=f"{KEY_ENV[provider]} is not set"):
        await fetch(server, provider, env={})
    assert server.requests == []


async def test_hourly_buckets_for_usage_daily_for_costs(server: FakeReporting) -> None:
    await fetch(server, "openai", width="1h", since=AUG[0], until=AUG[1])
    usage = server.queries(COMPLETIONS)[0]
    assert ("bucket_width", "1h") in usage and ("limit", "168") in usage
    assert ("bucket_width", "1d") in server.queries(COSTS)[0]
