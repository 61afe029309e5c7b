"""Reconciling known synthetic traffic: gateway events in a DuckDB file against provider reports served
over HTTP, with every expected difference worked out by hand below."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from reconcile.report import MATCH, OVER, UNDER, Line
from reconcile.service import Reconciler, Request
from reconcile.settings import ClientOptions, ProviderSettings, ReconcileSettings, Scope
from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent
from tests.reconcile import world
from tests.reconcile.fake_reporting import ANTHROPIC_KEY, OPENAI_KEY, FakeReporting
from tests.reconcile.test_sources import COMPLETIONS, COST_REPORT, COSTS, EMBEDDINGS, MESSAGES, Sleeps
from tests.reconcile.world import AUG

D = Decimal
GPT4O, MINI, EMBED = "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "text-embedding-3-small"
SONNET, HAIKU = "claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"
ENV = {"OPENAI_ADMIN_KEY": OPENAI_KEY, "ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY}


def serve_openai(server: FakeReporting) -> None:
    b, c, cost = world.openai_bucket, world.openai_completions, world.openai_cost
    server.buckets[COMPLETIONS] = [
        b(AUG[0], [c(GPT4O, "proj_gw", "key_gw", 10, 10000, 2000, 5000)]),
        b(
            AUG[1],
            [c(GPT4O, "proj_gw", "key_gw", 8, 8000, 0, 4000), c(MINI, "proj_other", "key_other", 3, 3000, 0, 300)],
        ),
        b(AUG[2], []),  # an empty day at the provider; the gateway saw one request
        b(AUG[3], [c(GPT4O, "proj_gw", "key_gw", 2, 2000, 0, 1000)]),  # the gateway saw nothing that day
    ]
    server.buckets[EMBEDDINGS] = [b(AUG[0], [world.openai_embeddings(EMBED, "proj_gw", "key_gw", 4, 800)])]
    server.buckets[COSTS] = [
        b(AUG[0], [cost(0.02, f"{GPT4O}, input", "proj_gw"), cost(0.0025, f"{GPT4O}, cached input", "proj_gw"),
                   cost(0.05, f"{GPT4O}, output", "proj_gw"), cost(0.000016, f"{EMBED}, input", "proj_gw")]),
        b(AUG[1], [cost(0.02, f"{GPT4O}, input", "proj_gw"), cost(0.04, f"{GPT4O}, output", "proj_gw"),
                   cost(0.00045, f"{MINI}, input", "proj_other"), cost(0.00018, f"{MINI}, output", "proj_other"),
                   cost(0.025, "web search tool calls", "proj_other")]),
        b(AUG[2], []),
        b(AUG[3], [cost(0.005, f"{GPT4O}, input", "proj_gw"), cost(0.01, f"{GPT4O}, output", "proj_gw")]),
    ]  # fmt: skip


def openai_events() -> list[UsageEvent]:
    e = world.event
    events = [e(AUG[0], GPT4O, input_tokens=1000, cached_input_tokens=200, output_tokens=500, total_cost="0.0072")
              for _ in range(9)]  # fmt: skip
    events += [
        # the client went away mid-stream: usage estimated, billed in full by OpenAI
        e(AUG[0], GPT4O, stream=True, error_type="client_disconnect", usage_source="estimated", input_tokens=1000,
          output_tokens=450, total_cost="0.007"),
        # refused by a budget: never reached OpenAI
        e(AUG[0], GPT4O, status_code=429, error_type="budget_exceeded", usage_source="none", pricing_status="unpriced",
          currency=None),
    ]  # fmt: skip
    events += [e(AUG[0], EMBED, endpoint="embeddings", input_tokens=200, total_cost="0.000004") for _ in range(4)]
    events += [e(AUG[1], GPT4O, input_tokens=1000, output_tokens=500, total_cost="0.0075") for _ in range(7)]
    events += [e(AUG[1], GPT4O, input_tokens=1000, output_tokens=500, pricing_status="unpriced", currency=None)]
    events += [e(AUG[2], GPT4O, input_tokens=100, output_tokens=10, total_cost="0.001")]
    # other gateway providers: never part of OpenAI's bill
    events += [e(AUG[0], GPT4O, provider="demo", input_tokens=99999, total_cost="9"),
               e(AUG[0], SONNET, provider="anthropic", input_tokens=1600, cached_input_tokens=100,
                 cache_write_tokens=750, output_tokens=250, total_cost="0.8689456"),
               e(AUG[0], SONNET, provider="anthropic", input_tokens=1600, cached_input_tokens=100,
                 cache_write_tokens=750, output_tokens=250, total_cost="0.8689456")]  # fmt: skip
    return events


@pytest.fixture
def server() -> Iterator[FakeReporting]:
    fake = FakeReporting(page_size=2).start()
    serve_openai(fake)
    yield fake
    fake.stop()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[DuckDBSink]:
    world.store(tmp_path / "meterway.duckdb", openai_events())
    sink = DuckDBSink(tmp_path / "meterway.duckdb")
    yield sink
    sink.close()


NO_SCOPE = Scope()


def settings_for(server: FakeReporting, tmp_path: Path, openai_scope: Scope = NO_SCOPE) -> ReconcileSettings:
    return ReconcileSettings(
        tolerance=D("0.05"), cost_abs_tolerance=D("0.001"), snapshot_dir=tmp_path / "snapshots",
        client=ClientOptions(max_retries=2, base_delay=0.01),
        providers={
            "openai": ProviderSettings("openai", server.url, "OPENAI_ADMIN_KEY", {"openai": openai_scope}),
            "anthropic": ProviderSettings("anthropic", server.url, "ANTHROPIC_ADMIN_KEY", {"anthropic": Scope()}),
        },
    )  # fmt: skip


def figures(line: Line, side: str) -> tuple[object, ...]:
    s = getattr(line, side)
    return (s.requests, s.input_tokens, s.cached_input_tokens, s.cache_write_tokens, s.output_tokens, s.cost)


def rel(line: Line, metric: str) -> Decimal | None:
    return line.differences[metric].relative


async def test_openai_reconciliation_by_model(server: FakeReporting, sink: DuckDBSink, tmp_path: Path) -> None:
    reconciler = Reconciler(settings_for(server, tmp_path), sink.query, env=ENV, sleep=Sleeps())
    report = await reconciler.run(Request("openai", AUG[0], AUG[4]))

    keys = [(ln.start, ln.model) for ln in report.lines]
    assert keys == [(AUG[0], GPT4O), (AUG[0], EMBED), (AUG[1], GPT4O), (AUG[1], MINI), (AUG[1], None),
                    (AUG[2], GPT4O), (AUG[3], GPT4O)]  # fmt: skip
    day1, embed, day2, mini, web_search, day3, day4 = report.lines

    # Aug 1, gpt-4o. Provider: 10 requests, 10000 in (2000 cached), 5000 out, 0.02 + 0.0025 + 0.05 = 0.0725 USD.
    # Gateway: 9 x (1000 in, 200 cached, 500 out, 0.0072) + the estimated stream (1000 in, 450 out, 0.007);
    # the budget refusal is an event but not a billed request.
    assert figures(day1, "provider") == (10, 10000, 2000, None, 5000, D("0.0725"))
    assert figures(day1, "gateway") == (10, 10000, 1800, 0, 4950, D("0.0718"))
    assert day1.notes.events == 11
    assert day1.differences["cached_input_tokens"].absolute == -200 and rel(day1, "cached_input_tokens") == D("-0.1")
    assert rel(day1, "output_tokens") == D("-0.01")  # -50 / 5000
    assert rel(day1, "cost") == D("-0.009655")  # -0.0007 / 0.0725; within the 0.001 cost allowance anyway
    assert day1.verdict == UNDER  # cached input is 10% short, beyond the 5% tolerance
    assert day1.causes == ["estimated_usage", "failed_after_streaming"]
    assert day1.notes.estimated_share == (D(1450) / D(9 * 1500 + 1450)).quantize(D("0.000001"))  # 0.096990

    assert figures(embed, "provider") == (4, 800, 0, None, 0, D("0.000016"))
    assert figures(embed, "gateway") == (4, 800, 0, 0, 0, D("0.000016"))
    assert (embed.verdict, embed.causes) == (MATCH, [])

    # Aug 2, gpt-4o: tokens agree; one request was unpriced, so the gateway's cost is 7 x 0.0075 = 0.0525 of 0.06.
    assert figures(day2, "gateway") == (8, 8000, 0, 0, 4000, D("0.0525"))
    assert rel(day2, "cost") == D("-0.125") and rel(day2, "input_tokens") == D(0)
    assert (day2.verdict, day2.causes) == (UNDER, ["unpriced_requests"])

    # Aug 2, gpt-4o-mini: only at the provider, never seen by the gateway: traffic that bypassed it.
    assert figures(mini, "provider") == (3, 3000, 0, None, 300, D("0.00063"))
    assert rel(mini, "requests") == D(-1) and mini.differences["cost"].absolute == D("-0.00063")
    assert (mini.verdict, mini.causes) == (UNDER, ["model_not_seen_by_gateway"])

    # Aug 2, web search: a cost the provider ties to no model.
    assert web_search.provider.cost == D("0.025") and rel(web_search, "cost") == D(-1)
    assert (web_search.verdict, web_search.causes) == (UNDER, ["cost_not_per_model"])

    # Aug 3: an empty day at the provider, one request at the gateway (provider reports lag).
    assert figures(day3, "provider") == (0, 0, 0, None, 0, D(0))
    assert day3.differences["requests"].absolute == 1 and rel(day3, "requests") is None
    assert (day3.verdict, day3.causes) == (OVER, ["not_reported_by_provider"])

    # Aug 4: the provider billed gpt-4o; the gateway recorded nothing at all that day.
    assert figures(day4, "provider") == (2, 2000, 0, None, 1000, D("0.015"))
    assert (day4.verdict, day4.causes) == (UNDER, ["provider_only_day"])

    # Totals. Provider: 27 requests, 23800 in, 2000 cached, 10300 out,
    # 0.072516 + 0.08563 + 0.015 = 0.173146 USD. Gateway: 23 requests, 18900 in, 1800 cached, 8960 out,
    # 0.0718 + 0.000016 + 0.0525 + 0.001 = 0.125316 USD (the demo and anthropic events are not OpenAI's).
    assert figures(report.totals, "provider") == (27, 23800, 2000, None, 10300, D("0.173146"))
    assert figures(report.totals, "gateway") == (23, 18900, 1800, 0, 8960, D("0.125316"))
    assert report.relative_difference == (D("-0.04783") / D("0.173146")).quantize(D("0.000001"))
    assert report.relative_difference == D("-0.276241")
    assert report.totals.verdict == UNDER
    assert report.summary["lines"] == {MATCH: 1, UNDER: 5, OVER: 1}
    assert report.summary["models_not_seen_by_gateway"] == [MINI]
    assert report.summary["provider_only_periods"] == [AUG[3]]
    assert report.summary["gateway_unpriced_requests"] == 1 and report.summary["gateway_failed_after_streaming"] == 1


async def test_offline_reruns_the_snapshot_and_older_snapshots_stay_comparable(
    server: FakeReporting, sink: DuckDBSink, tmp_path: Path
) -> None:
    reconciler = Reconciler(settings_for(server, tmp_path), sink.query, env=ENV, sleep=Sleeps())
    online = await reconciler.run(Request("openai", AUG[0], AUG[4]))
    asked = len(server.requests)

    offline = await reconciler.run(Request("openai", AUG[1], AUG[3], offline=True))  # a part of the stored range
    assert len(server.requests) == asked  # nothing was fetched
    assert offline.offline and offline.snapshot["id"] == online.snapshot["id"]
    assert [(ln.start, ln.model) for ln in offline.lines] == [(AUG[1], GPT4O), (AUG[1], MINI), (AUG[1], None),
                                                              (AUG[2], GPT4O)]  # fmt: skip
    assert offline.lines[0].differences == online.lines[2].differences

    # Later the provider reports Aug 3 too; a new fetch is a new snapshot, and the first one still re-runs.
    server.buckets[COMPLETIONS][2] = world.openai_bucket(
        AUG[2], [world.openai_completions(GPT4O, "p", "k", 1, 100, 0, 10)]
    )
    later = await reconciler.run(Request("openai", AUG[0], AUG[4]))
    assert (later.lines[5].start, later.lines[5].verdict, later.lines[5].causes) == (AUG[2], MATCH, [])
    assert len(reconciler.snapshots.list("openai")) == 2
    again = await reconciler.run(Request("openai", AUG[0], AUG[4], snapshot_id=str(online.snapshot["id"])))
    assert again.lines[5].causes == ["not_reported_by_provider"]
    assert again.totals.provider.requests == 27 and later.totals.provider.requests == 28


async def test_by_project_shows_traffic_outside_the_gateways_project(
    server: FakeReporting, sink: DuckDBSink, tmp_path: Path
) -> None:
    settings = settings_for(server, tmp_path, openai_scope=Scope(project="proj_gw", api_key="key_gw"))
    report = await Reconciler(settings, sink.query, env=ENV, sleep=Sleeps()).run(
        Request("openai", AUG[0], AUG[4], by="project")
    )
    scoped = {(ln.start, ln.model, ln.scope): ln for ln in report.lines}
    assert set(scoped) == {(AUG[0], GPT4O, "proj_gw"), (AUG[0], EMBED, "proj_gw"), (AUG[1], GPT4O, "proj_gw"),
                           (AUG[1], MINI, "proj_other"), (AUG[1], None, "proj_other"), (AUG[2], GPT4O, "proj_gw"),
                           (AUG[3], GPT4O, "proj_gw")}  # fmt: skip
    assert scoped[(AUG[1], MINI, "proj_other")].causes == ["model_not_seen_by_gateway", "scope_not_via_gateway"]
    assert scoped[(AUG[1], GPT4O, "proj_gw")].provider.cost == D("0.06")  # costs carry the project

    by_key = await Reconciler(settings, sink.query, env=ENV).run(
        Request("openai", AUG[0], AUG[4], by="api_key", offline=True)
    )
    first = by_key.lines[0]
    assert (first.scope, first.provider.cost) == ("key_gw", None)  # costs are not reported per key
    assert by_key.totals.provider.cost == D("0.173146")


async def test_anthropic_reconciliation_without_request_counts(
    server: FakeReporting, sink: DuckDBSink, tmp_path: Path
) -> None:
    u, cost = world.anthropic_usage, world.anthropic_cost
    server.buckets[MESSAGES] = [
        world.anthropic_bucket(AUG[0], [u(SONNET, "ws_gw", "key_gw", 1500, 200, 500, 1000, 500)]),
        world.anthropic_bucket(AUG[1], [u(HAIKU, "ws_other", "key_other", 400, 0, 0, 0, 100)]),
    ]
    server.buckets[COST_REPORT] = [
        world.anthropic_bucket(AUG[0], [cost("123.78912", SONNET, "ws_gw", "Claude Sonnet 4 Usage - Input Tokens"),
                                        cost("50", SONNET, "ws_gw", "Claude Sonnet 4 Usage - Output Tokens")]),
        world.anthropic_bucket(AUG[1], [cost("10", HAIKU, "ws_other", "Claude Haiku 3.5 Usage - Input Tokens")]),
    ]  # fmt: skip
    report = await Reconciler(settings_for(server, tmp_path), sink.query, env=ENV).run(
        Request("anthropic", AUG[0], AUG[2])
    )
    sonnet, haiku = report.lines
    # provider: 1500 + 200 + 500 + 1000 = 3200 in, 200 cached, 1500 written, 500 out, 173.78912 cents;
    # gateway: 2 x (1600 in, 100 cached, 750 written, 250 out, 0.8689456 USD)
    assert figures(sonnet, "provider") == (None, 3200, 200, 1500, 500, D("1.7378912"))
    assert figures(sonnet, "gateway") == (2, 3200, 200, 1500, 500, D("1.7378912"))
    assert sonnet.differences["requests"].absolute is None and (sonnet.verdict, sonnet.causes) == (MATCH, [])
    assert (haiku.verdict, haiku.causes) == (UNDER, ["model_not_seen_by_gateway", "provider_only_day"])
    assert report.relative_difference == (D("-0.1") / D("1.8378912")).quantize(D("0.000001"))
