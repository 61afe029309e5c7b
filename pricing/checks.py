"""Checks that need the whole price book at once: duplicates, alias conflicts and FX coverage.

An entry of `provider/model` is in force from its `effective_from` until its `effective_to` or until a later
entry of the same `provider/model` takes over, whichever comes first (an expired later entry, such as a
promotion, hands back to the earlier one). While in force, it claims its model id and every alias. Two
different models claiming the same id at the same moment is a conflict: the price of that id would depend
on which entry happened to be read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pricing.entry import FxRate, PriceEntry, format_short

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def label(entry: PriceEntry) -> str:
    return f"{entry.origin} ({entry.provider}/{entry.model} {format_short(entry.effective_from)})"


def duplicate_problems(entries: Iterable[PriceEntry]) -> list[str]:
    seen: dict[tuple[str, str, datetime], PriceEntry] = {}
    problems = []
    for entry in entries:
        key = (entry.provider, entry.model, entry.effective_from)
        first = seen.setdefault(key, entry)
        if first is not entry:
            problems.append(
                f"{label(entry)}: duplicate of {first.origin}: same provider, model and effective_from "
                "(a price change needs a new effective_from)"
            )
    return problems


def in_force_segments(chain: Sequence[PriceEntry]) -> list[tuple[datetime, datetime, PriceEntry]]:
    """The `[start, end)` spans during which each entry of one provider/model chain is the one in force."""
    bounds = sorted({e.effective_from for e in chain} | {e.effective_to for e in chain if e.effective_to})
    segments: list[tuple[datetime, datetime, PriceEntry]] = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else _END_OF_TIME
        live = [e for e in chain if e.in_force(start)]
        if not live:
            continue
        entry = max(live, key=lambda e: e.effective_from)
        if segments and segments[-1][2] is entry and segments[-1][1] == start:
            segments[-1] = (segments[-1][0], end, entry)
        else:
            segments.append((start, end, entry))
    return segments


def alias_problems(entries: Iterable[PriceEntry]) -> list[str]:
    chains: dict[tuple[str, str], list[PriceEntry]] = defaultdict(list)
    for entry in entries:
        chains[(entry.provider, entry.model)].append(entry)
    claims: dict[tuple[str, str], list[tuple[datetime, datetime, PriceEntry]]] = defaultdict(list)
    for (provider, _), chain in chains.items():
        for start, end, entry in in_force_segments(chain):
            for name in entry.names:
                claims[(provider, name)].append((start, end, entry))
    problems: list[str] = []
    for (_, name), spans in claims.items():
        spans.sort(key=lambda s: s[0])
        reported: set[tuple[int, int]] = set()
        for i, (a_start, a_end, a) in enumerate(spans):
            for b_start, b_end, b in spans[i + 1 :]:
                if b_start >= a_end:
                    break
                if a.model == b.model or (id(a), id(b)) in reported:
                    continue
                reported.add((id(a), id(b)))
                first, second = (a, b) if a.effective_from <= b.effective_from else (b, a)
                until = min(a_end, b_end)
                span = f"from {format_short(max(a_start, b_start))}" + (
                    "" if until == _END_OF_TIME else f" until {format_short(until)}"
                )
                problems.append(
                    f"{label(second)}: {_claim(second, name)} {name!r} is also claimed as {_claim(first, name)} by "
                    f"{first.provider}/{first.model} {format_short(first.effective_from)} ({first.origin}) {span}; "
                    "end one entry with effective_to, or drop the alias from one"
                )
    return problems


def _claim(entry: PriceEntry, name: str) -> str:
    return "model id" if name == entry.model else "alias"


def fx_problems(entries: Sequence[PriceEntry], fx: Sequence[FxRate], reporting_currency: str) -> list[str]:
    """Every currency in use needs a rate to the reporting currency from its first priced day on."""
    first_use: dict[str, PriceEntry] = {}
    for entry in entries:
        if entry.currency == reporting_currency:
            continue
        known = first_use.get(entry.currency)
        if known is None or entry.effective_from < known.effective_from:
            first_use[entry.currency] = entry
    problems = []
    for currency, entry in sorted(first_use.items()):
        pairs = {(currency, reporting_currency), (reporting_currency, currency)}
        starts = [r.effective_from for r in fx if (r.from_currency, r.to_currency) in pairs]
        if not starts:
            problems.append(
                f"fx: no {currency}->{reporting_currency} rate for reporting currency {reporting_currency}, but "
                f"{sum(e.currency == currency for e in entries)} entries are priced in {currency} "
                f"(first: {label(entry)})"
            )
        elif min(starts) > entry.effective_from:
            problems.append(
                f"fx: the first {currency}->{reporting_currency} rate starts {format_short(min(starts))}, after "
                f"{label(entry)} which is priced in {currency}"
            )
    return problems


def fx_duplicate_problems(fx: Sequence[FxRate]) -> list[str]:
    seen: set[tuple[str, str, datetime]] = set()
    problems = []
    for rate in fx:
        key = (rate.from_currency, rate.to_currency, rate.effective_from)
        if key in seen:
            problems.append(
                f"{rate.origin}: duplicate rate {rate.from_currency}->{rate.to_currency} "
                f"from {format_short(rate.effective_from)}"
            )
        seen.add(key)
    return problems
