"""Property-based tests of the lookup: the latest entry in force wins, and later entries never rewrite the past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pricing.book import PriceBook
from pricing.calculator import Tokens, price_usage
from pricing.entry import PriceEntry

BASE = datetime(2025, 1, 1, tzinfo=UTC)
SECONDS = 86400 * 60  # entries and requests fall within 60 days, so boundaries collide often enough to matter


def make_entry(start: int, length: int | None, cents: int, model: str = "m") -> PriceEntry:
    begin = BASE + timedelta(seconds=start)
    return PriceEntry(
        provider="p",
        model=model,
        currency="USD",
        effective_from=begin,
        effective_to=None if length is None else begin + timedelta(seconds=length),
        aliases=("m-alias",) if model == "m" else (),
        prices=MappingProxyType({"input": Decimal(cents) / 100, "output": Decimal(cents) / 50}),
    )


entry_specs = st.lists(
    st.tuples(
        st.integers(0, SECONDS),
        st.one_of(st.none(), st.integers(1, SECONDS // 4)),
        st.integers(0, 10000),
    ),
    min_size=0,
    max_size=8,
    unique_by=lambda spec: spec[0],
)
moments = st.integers(-3600, SECONDS + 3600).map(lambda s: BASE + timedelta(seconds=s))


def expected(entries: list[PriceEntry], at: datetime) -> PriceEntry | None:
    live = [e for e in entries if e.effective_from <= at and (e.effective_to is None or at < e.effective_to)]
    return max(live, key=lambda e: e.effective_from, default=None)


@settings(max_examples=60, deadline=None)
@given(entry_specs, moments)
def test_entry_chosen_is_the_latest_in_force(specs: list[tuple[int, int | None, int]], at: datetime) -> None:
    entries = [make_entry(*spec) for spec in specs]
    book = PriceBook.from_entries(entries)
    want = expected(entries, at)
    assert book.entry_for("p", "m", at) is want
    assert book.entry_for("p", "m-alias", at) is want
    chosen = book.entry_for("p", "m", at)
    if chosen is not None:
        assert chosen.in_force(at)


@settings(max_examples=60, deadline=None)
@given(entry_specs, moments, st.integers(1, SECONDS), st.one_of(st.none(), st.integers(1, SECONDS)), st.integers(0, 9))
def test_a_later_entry_never_changes_an_earlier_price(
    specs: list[tuple[int, int | None, int]], at: datetime, later_by: int, length: int | None, cents: int
) -> None:
    entries = [make_entry(*spec) for spec in specs]
    start = int((at - BASE).total_seconds()) + later_by
    assume(all(e.effective_from != BASE + timedelta(seconds=start) for e in entries))
    before = PriceBook.from_entries(entries)
    after = PriceBook.from_entries([*entries, make_entry(start, length, cents)])
    tokens = Tokens(input_tokens=12345, cached_input_tokens=0, output_tokens=678)
    old = price_usage(before.entry_for("p", "m", at), tokens, at=at)
    new = price_usage(after.entry_for("p", "m", at), tokens, at=at)
    assert old == new
