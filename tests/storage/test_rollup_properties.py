"""Property: whatever the stream of segments (duplicates, replays, conflicting copies), rollups equal raw aggregates."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.duckdb_sink import DuckDBSink
from storage.event import UsageEvent
from tests.storage.helpers import T0, event, rollup_mismatches, write_segment

money = st.one_of(st.none(), st.decimals(min_value=0, max_value=50, places=12, allow_nan=False, allow_infinity=False))


@st.composite
def events(draw: st.DrawFn) -> UsageEvent:
    tokens_in = draw(st.integers(0, 5000))
    tokens_out = draw(st.integers(0, 2000))
    cost = draw(money)
    currency = None if cost is None else draw(st.sampled_from(["USD", "CNY"]))
    status = draw(st.sampled_from([200, 200, 200, 400, 429, 499, 502]))
    return event(
        ts=T0 + timedelta(minutes=draw(st.integers(0, 70 * 24 * 60))),  # crosses days and months
        tenant_id=draw(st.sampled_from([None, "a", "b", "c"])),
        provider=draw(st.sampled_from([None, "openai", "dashscope"])),
        model=draw(st.sampled_from([None, "m1", "m2"])),
        feature=draw(st.sampled_from([None, "chat", "search"])),
        status_code=status,
        error_type=None if status < 400 else "upstream_error",
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_input_tokens=draw(st.integers(0, tokens_in)),
        reasoning_tokens=draw(st.integers(0, tokens_out)),
        currency=currency,
        total_cost=cost,
        cost_reporting=None if cost is None or (draw(st.booleans()) and currency == "CNY") else cost * Decimal("0.14"),
        reporting_currency=draw(st.sampled_from(["USD", "USD", "EUR"])),
        pricing_status="unpriced" if cost is None else "priced",
    )


@st.composite
def streams(draw: st.DrawFn) -> list[list[UsageEvent]]:
    pool = draw(st.lists(events(), min_size=1, max_size=30))
    conflicting = [
        event(request_id=e.request_id, ts=e.ts + timedelta(days=draw(st.integers(0, 40))), input_tokens=7)
        for e in draw(st.lists(st.sampled_from(pool), max_size=3))
    ]  # same id, other content: the first stored copy wins everywhere
    everything = pool + conflicting
    segments = draw(st.lists(st.lists(st.sampled_from(everything), min_size=1, max_size=15), min_size=1, max_size=5))
    replays = draw(st.lists(st.sampled_from(segments), max_size=3))  # a crash between load and delete
    return segments + replays


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_rollups_equal_aggregates_of_the_raw_events(segments: list[list[UsageEvent]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sink = DuckDBSink(Path(":memory:"))
        try:
            new = sum(sink.load_segment(write_segment(Path(tmp) / f"{i}.jsonl", seg)) for i, seg in enumerate(segments))
            ids = {e.request_id for seg in segments for e in seg}
            assert sink.query("SELECT count(*), count(DISTINCT request_id) FROM llm_usage_events") == [(len(ids),) * 2]
            assert new == len(ids)
            assert set(rollup_mismatches(sink).values()) == {0}
            assert sink.query("SELECT sum(requests) FROM usage_rollup_monthly") == [(len(ids),)]
        finally:
            sink.close()


@st.composite
def journal_batches(draw: st.DrawFn) -> list[list[list[UsageEvent]]]:
    """What a loader sees: each event journaled once, in one segment; a segment may come again after a crash
    between its load and its deletion; several segments load in one batch."""
    pool = list({e.request_id: e for e in draw(st.lists(events(), min_size=1, max_size=40))}.values())
    cuts = sorted(draw(st.lists(st.integers(1, len(pool)), max_size=6)))
    segments = [pool[a:b] for a, b in zip([0, *cuts], [*cuts, len(pool)], strict=True) if pool[a:b]]
    loads = segments + draw(st.lists(st.sampled_from(segments), max_size=3))
    sizes = draw(st.lists(st.integers(1, 3), min_size=len(loads), max_size=len(loads)))
    batches, at = [], 0
    for size in sizes:
        if at < len(loads):
            batches.append(loads[at : at + size])
            at += size
    return batches


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journal_batches())
def test_journal_segments_loaded_again_add_nothing(batches: list[list[list[UsageEvent]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sink = DuckDBSink(Path(":memory:"))
        try:
            new = 0
            for b, batch in enumerate(batches):
                files = [write_segment(Path(tmp) / f"{b}-{i}.jsonl", seg) for i, seg in enumerate(batch)]
                new += sink.load_segments(files)
            ids = {e.request_id for batch in batches for seg in batch for e in seg}
            assert sink.query("SELECT count(*), count(DISTINCT request_id) FROM llm_usage_events") == [(len(ids),) * 2]
            assert new == len(ids)
            assert set(rollup_mismatches(sink).values()) == {0}
        finally:
            sink.close()
