"""The price book: load and validate it from YAML, then look up the entry in force for a request.

`PriceBook.load(path)` reads one YAML file, or every `*.yaml`/`*.yml` file under a folder, collects every
problem in every file, and raises `PriceBookError` listing them all, or returns an immutable book. Lookups
go through a dict keyed by (provider, model id or alias) holding that name's entries sorted by
`effective_from`; a bisect on the request time finds the entry in force. FX rates are dated the same way.
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Generic, TypeVar

import yaml

from pricing.checks import alias_problems, duplicate_problems, fx_duplicate_problems, fx_problems
from pricing.entry import FxRate, PriceEntry, format_short
from pricing.parse import parse_document
from pricing.yamlio import load_yaml

ONE = Decimal(1)
T = TypeVar("T")
YAML_SUFFIXES = (".yaml", ".yml")


class PriceBookError(Exception):
    """A price book that cannot be used; `problems` holds one clear line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(f"invalid price book ({count} problem{'s' if count != 1 else ''}):\n" + "\n".join(problems))


class _Dated(Generic[T]):
    """Values sorted by start time; `at(t)` is the latest one started at or before `t` and not yet ended."""

    __slots__ = ("ends", "starts", "values")

    def __init__(self, items: Iterable[tuple[datetime, datetime | None, T]]) -> None:
        ordered = sorted(items, key=lambda item: item[0])
        self.starts = [start for start, _, _ in ordered]
        self.ends = [end for _, end, _ in ordered]
        self.values = [value for _, _, value in ordered]

    def at(self, when: datetime) -> T | None:
        i = bisect_right(self.starts, when)
        while i:
            i -= 1
            end = self.ends[i]
            if end is None or when < end:
                return self.values[i]
        return None


class PriceBook:
    """An immutable, validated set of dated price entries and FX rates."""

    def __init__(
        self, entries: Sequence[PriceEntry], fx: Sequence[FxRate] = (), *, version: str, path: Path | None = None
    ) -> None:
        """Index entries that are already validated; use `load`, `loads` or `from_entries` instead."""
        self.entries: tuple[PriceEntry, ...] = tuple(entries)
        self.fx: tuple[FxRate, ...] = tuple(fx)
        self.version = version
        self.path = path
        by_name: dict[tuple[str, str], list[tuple[datetime, datetime | None, PriceEntry]]] = defaultdict(list)
        by_model: dict[tuple[str, str], list[tuple[datetime, datetime | None, PriceEntry]]] = defaultdict(list)
        for e in self.entries:
            item = (e.effective_from, e.effective_to, e)
            by_model[(e.provider, e.model)].append(item)
            for name in e.names:
                by_name[(e.provider, name)].append(item)
        self._by_name = {key: _Dated(items) for key, items in by_name.items()}
        self._by_model = {key: _Dated(items) for key, items in by_model.items()}
        direct: dict[tuple[str, str], list[tuple[datetime, datetime | None, Decimal]]] = defaultdict(list)
        inverse: dict[tuple[str, str], list[tuple[datetime, datetime | None, Decimal]]] = defaultdict(list)
        for r in self.fx:
            direct[(r.from_currency, r.to_currency)].append((r.effective_from, None, r.rate))
            inverse[(r.to_currency, r.from_currency)].append((r.effective_from, None, ONE / r.rate))
        self._fx_direct = {key: _Dated(items) for key, items in direct.items()}
        self._fx_inverse = {key: _Dated(items) for key, items in inverse.items()}

    # -- building -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, reporting_currency: str | None = None) -> PriceBook:
        """Read a YAML file, or every YAML file under a folder, as one book; raise PriceBookError if invalid."""
        root = Path(path)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not files:
                raise PriceBookError([f"{root}: no *.yaml files in this folder"])
            named = [(p.relative_to(root).as_posix(), p) for p in files]
        elif root.is_file():
            named = [(root.name, root)]
        else:
            raise PriceBookError([f"{root}: no such file or folder"])
        documents: list[tuple[str, str]] = []
        problems: list[str] = []
        for name, file in named:
            try:
                documents.append((name, file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{name}: cannot read: {exc}")
        if problems:
            raise PriceBookError(problems)
        return cls.from_documents(documents, reporting_currency=reporting_currency, path=root)

    @classmethod
    def loads(cls, text: str, *, name: str = "<book>", reporting_currency: str | None = None) -> PriceBook:
        """A book from one YAML document given as text."""
        return cls.from_documents([(name, text)], reporting_currency=reporting_currency)

    @classmethod
    def from_documents(
        cls, documents: Sequence[tuple[str, str]], *, reporting_currency: str | None = None, path: Path | None = None
    ) -> PriceBook:
        """A book from (name, YAML text) pairs read together; names appear in problem messages."""
        digest = hashlib.sha256()
        entries: list[PriceEntry] = []
        fx: list[FxRate] = []
        problems: list[str] = []
        for name, text in documents:
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
            try:
                doc = load_yaml(text)
            except yaml.YAMLError as exc:
                problems.append(f"{name}: invalid YAML: {' '.join(str(exc).split())}")
                continue
            parsed = parse_document(doc, name)
            entries.extend(parsed.entries)
            fx.extend(parsed.fx)
            problems.extend(parsed.problems)
        problems.extend(book_problems(entries, fx, reporting_currency))
        if problems:
            raise PriceBookError(problems)
        return cls(entries, fx, version=digest.hexdigest()[:16], path=path)

    @classmethod
    def from_entries(
        cls, entries: Sequence[PriceEntry], fx: Sequence[FxRate] = (), *, reporting_currency: str | None = None
    ) -> PriceBook:
        """A book from entries built in code, validated like a loaded one."""
        problems = book_problems(entries, fx, reporting_currency)
        if problems:
            raise PriceBookError(problems)
        digest = hashlib.sha256(repr((tuple(entries), tuple(fx))).encode()).hexdigest()[:16]
        return cls(entries, fx, version=digest)

    # -- lookups --------------------------------------------------------------------------------------

    def entry_for(self, provider: str, model: str, at: datetime) -> PriceEntry | None:
        """The entry in force at `at` for `provider` whose model id or alias is exactly `model`."""
        if at.tzinfo is None:
            raise ValueError("price lookups need a timezone-aware time")
        dated = self._by_name.get((provider, model))
        return None if dated is None else dated.at(at)

    def fx_rate(self, from_currency: str, to_currency: str, at: datetime) -> Decimal | None:
        """How many `to_currency` one `from_currency` is worth at `at`; the inverse pair is used as 1/rate."""
        if from_currency == to_currency:
            return ONE
        for table in (self._fx_direct, self._fx_inverse):
            dated = table.get((from_currency, to_currency))
            rate = None if dated is None else dated.at(at)
            if rate is not None:
                return rate
        return None

    def in_force(self, at: datetime, provider: str | None = None) -> list[PriceEntry]:
        """The entry in force at `at` for every model id (not alias), sorted by provider and model."""
        out = []
        for (prov, _), dated in sorted(self._by_model.items()):
            if provider is None or prov == provider:
                entry = dated.at(at)
                if entry is not None:
                    out.append(entry)
        return out

    def history_edits(self, new: PriceBook, now: datetime) -> list[str]:
        """How `new` would change prices this book has already charged: an entry in force at or before `now`
        that `new` lacks, or has with other prices, or ends earlier than `now` where this one does not.
        One line per entry; empty when `new` only adds entries, or edits ones not yet in force."""
        edits = []
        later = {e.price_id: e for e in new.entries}
        for old in self.entries:
            if old.effective_from > now:
                continue
            since = f"{old.price_id}: in force since {format_short(old.effective_from)}"
            edited = later.get(old.price_id)
            if edited is None:
                edits.append(f"{since}, but missing from the new book")
            elif changes := _changes(old, edited, now):
                edits.append(f"{since}, but its {', '.join(changes)} changed")
        return edits

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(sorted({e.provider for e in self.entries}))

    @property
    def service_tiers(self) -> tuple[str, ...]:
        """Every service tier some entry prices (`flex`, `batch`, ...), sorted."""
        return tuple(sorted({tier for e in self.entries for tier in e.service_tiers}))

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({e.currency for e in self.entries}))


def unknown_tier(what: str, known: Sequence[str]) -> str:
    """The message for a service tier no entry prices: `what` names it as the caller was given it."""
    listed = ", ".join(known) if known else "none"
    return f"{what} is not a service tier the price book prices (known: {listed}); leave it out for standard prices"


def book_problems(
    entries: Sequence[PriceEntry], fx: Sequence[FxRate], reporting_currency: str | None = None
) -> list[str]:
    """Problems that only show across entries: duplicates, alias conflicts, FX rates missing."""
    problems = duplicate_problems(entries) + alias_problems(entries) + fx_duplicate_problems(fx)
    if reporting_currency is not None:
        problems += fx_problems(entries, fx, reporting_currency)
    return problems


def _changes(old: PriceEntry, new: PriceEntry, now: datetime) -> list[str]:
    """What of `old`'s pricing up to `now` `new` prices otherwise (`history_edits`)."""
    changes = [
        f"{name} {_amount(old.prices.get(name))} -> {_amount(new.prices.get(name))}"
        for name in sorted({*old.prices, *new.prices})
        if old.prices.get(name) != new.prices.get(name)
    ]
    for part in ("currency", "tiers", "time_of_day", "service_tiers"):
        if getattr(old, part) != getattr(new, part):
            changes.append(part)
    if min(old.effective_to or now, now) != min(new.effective_to or now, now):
        changes.append("effective_to")
    return changes


def _amount(value: Decimal | None) -> str:
    return "none" if value is None else str(value)
