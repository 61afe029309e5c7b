"""Turning one YAML document of a price book into `PriceEntry` and `FxRate` values.

Parsing never stops at the first mistake: every problem found is appended to a list as one line that names
the file, the entry (`prices[3] (openai/gpt-4o 2024-05-13)`) and the field. The entries that parsed cleanly
are returned alongside, so book-wide checks can still run over them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from pricing.entry import PRICE_FIELDS, FxRate, PriceEntry, Prices, Tier, Window

INFO_FIELDS = ("source", "notes", "uncertain", "unit", "effective_from_basis", "input_audio", "deployment_type")
LAYER_FIELDS = ("tiers", "time_of_day", "service_tiers", "batch")
KEY_FIELDS = ("provider", "model", "aliases", "currency", "effective_from", "effective_to")
ENTRY_FIELDS = frozenset((*KEY_FIELDS, *PRICE_FIELDS, *LAYER_FIELDS, *INFO_FIELDS))
TIER_FIELDS = frozenset(("input_tokens_gt", "input_tokens_lte", *PRICE_FIELDS))
WINDOW_FIELDS = frozenset(("window_utc", *PRICE_FIELDS))
FX_FIELDS = frozenset(("from", "to", "rate", "effective_from", "source", "notes"))
TOP_FIELDS = frozenset(("fx", "prices"))
UNIT = "per_1m_tokens"

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass
class Parsed:
    """What one document yielded: the valid entries and FX rates, and every problem found."""

    entries: list[PriceEntry] = field(default_factory=list)
    fx: list[FxRate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Where:
    """Prefixes problems with the place they were found."""

    def __init__(self, problems: list[str], prefix: str) -> None:
        self.problems = problems
        self.prefix = prefix

    def add(self, message: str) -> None:
        self.problems.append(f"{self.prefix}: {message}")


def parse_document(doc: Any, name: str) -> Parsed:
    """Parse one YAML document: a mapping with `fx:` and `prices:`, or a bare list of price entries."""
    out = Parsed()
    if doc is None:
        return out
    if isinstance(doc, list):
        prices: Any = doc
        fx: Any = []
    elif isinstance(doc, dict):
        for key in doc:
            if key not in TOP_FIELDS:
                out.problems.append(f"{name}: unknown top-level key {key!r} (expected 'fx' and 'prices')")
        prices = doc.get("prices") or []
        fx = doc.get("fx") or []
    else:
        out.problems.append(f"{name}: expected a mapping with 'fx' and 'prices', or a list of price entries")
        return out
    if not isinstance(prices, list):
        out.problems.append(f"{name}: 'prices' must be a list")
        prices = []
    if not isinstance(fx, list):
        out.problems.append(f"{name}: 'fx' must be a list")
        fx = []
    for i, raw in enumerate(prices):
        entry = _parse_entry(raw, f"{name}: prices[{i}]", out.problems)
        if entry is not None:
            out.entries.append(entry)
    for i, raw in enumerate(fx):
        rate = _parse_fx(raw, f"{name}: fx[{i}]", out.problems)
        if rate is not None:
            out.fx.append(rate)
    return out


def entry_label(raw: Mapping[str, Any]) -> str:
    """`provider/model effective_from` as well as it can be read from a raw entry."""
    return f"{raw.get('provider', '?')}/{raw.get('model', '?')} {raw.get('effective_from', '?')}"


def _parse_entry(raw: Any, place: str, problems: list[str]) -> PriceEntry | None:
    if not isinstance(raw, dict):
        problems.append(f"{place}: expected a mapping, got {type(raw).__name__}")
        return None
    where = _Where(problems, f"{place} ({entry_label(raw)})")
    before = len(problems)
    for key in raw:
        if key not in ENTRY_FIELDS:
            where.add(f"unknown field {key!r}")
    provider = _name(raw, "provider", where)
    model = _name(raw, "model", where)
    currency = _currency(raw.get("currency"), "currency", where)
    start = _timestamp(raw, "effective_from", where, required=True)
    end = _timestamp(raw, "effective_to", where, required=False)
    if start is not None and end is not None and end <= start:
        where.add(f"effective_to {raw['effective_to']} must be after effective_from {raw['effective_from']}")
    aliases = _aliases(raw.get("aliases"), where)
    prices = _prices(raw, where, "")
    if "input" not in raw:
        where.add("missing field 'input'")
    tiers = _tiers(raw.get("tiers"), where)
    windows = _windows(raw.get("time_of_day"), where)
    services = _services(raw, where)
    info = {k: raw[k] for k in INFO_FIELDS if k in raw}
    _check_info(info, where)
    if len(problems) > before or provider is None or model is None or currency is None or start is None:
        return None
    return PriceEntry(
        provider=provider,
        model=model,
        currency=currency,
        effective_from=start,
        effective_to=end,
        aliases=aliases,
        prices=prices,
        tiers=tiers,
        time_of_day=windows,
        service_tiers=MappingProxyType(services),
        info=MappingProxyType(info),
        origin=place,
    )


def _name(raw: Mapping[str, Any], key: str, where: _Where) -> str | None:
    value = raw.get(key)
    if value is None:
        where.add(f"missing field {key!r}")
        return None
    if not isinstance(value, str) or not value.strip():
        where.add(f"{key!r} must be a non-empty string, got {value!r}")
        return None
    return value


def _currency(value: Any, key: str, where: _Where) -> str | None:
    if value is None:
        where.add("missing currency" if key == "currency" else f"missing field {key!r}")
        return None
    if not isinstance(value, str) or not _CURRENCY.match(value):
        where.add(f"{key!r} must be a 3-letter currency code like USD, got {value!r}")
        return None
    return value


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 date (00:00 UTC) or datetime with an explicit offset; raises ValueError otherwise."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        ts = datetime.fromisoformat(text)
    else:
        raise ValueError(f"expected an ISO 8601 date or datetime, got {value!r}")
    if ts.tzinfo is None:
        raise ValueError(f"{value!r} has a time but no timezone (add Z for UTC)")
    return ts.astimezone(UTC)


def _timestamp(raw: Mapping[str, Any], key: str, where: _Where, *, required: bool) -> datetime | None:
    if key not in raw or raw[key] is None:
        if required:
            where.add(f"missing field {key!r}")
        return None
    try:
        return parse_timestamp(raw[key])
    except ValueError as exc:
        where.add(f"bad date in {key!r}: {exc}")
        return None


def _aliases(value: Any, where: _Where) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        where.add(f"'aliases' must be a list of model ids, got {value!r}")
        return ()
    return tuple(dict.fromkeys(value))


def parse_amount(value: Any) -> Decimal:
    """A non-negative decimal from a YAML number or decimal string; raises ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ValueError(f"is not a number: {value!r}")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"is not a number: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"is not a finite number: {value!r}")
    if amount < 0:
        raise ValueError(f"is negative: {value}")
    return amount


def _prices(raw: Mapping[str, Any], where: _Where, inside: str) -> Prices:
    out: dict[str, Decimal] = {}
    for key in PRICE_FIELDS:
        if key in raw:
            try:
                out[key] = parse_amount(raw[key])
            except ValueError as exc:
                where.add(f"{inside}{key!r} {exc}")
    return MappingProxyType(out)


def _bound(raw: Mapping[str, Any], key: str, where: _Where, inside: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        where.add(f"{inside}{key!r} must be a non-negative whole number of tokens, got {value!r}")
        return None
    return value


def _mappings(value: Any, name: str, fields: Collection[str], where: _Where) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each mapping of a list field (`tiers`, `time_of_day`) with its label, after shape and field checks."""
    if value is None:
        return
    if not isinstance(value, list):
        where.add(f"'{name}' must be a list")
        return
    for i, raw in enumerate(value):
        inside = f"{name}[{i}]: "
        if not isinstance(raw, dict):
            where.add(f"{inside}expected a mapping")
            continue
        for key in raw:
            if key not in fields:
                where.add(f"{inside}unknown field {key!r}")
        yield inside, raw


def _tiers(value: Any, where: _Where) -> tuple[Tier, ...]:
    tiers: list[Tier] = []
    for inside, raw in _mappings(value, "tiers", TIER_FIELDS, where):
        gt = _bound(raw, "input_tokens_gt", where, inside)
        lte = _bound(raw, "input_tokens_lte", where, inside)
        if gt is not None and lte is not None and lte <= gt:
            where.add(f"{inside}input_tokens_lte {lte} must be greater than input_tokens_gt {gt}")
            continue
        tiers.append(Tier(gt, lte, _prices(raw, where, inside)))
    ordered = sorted(tiers, key=lambda t: -1 if t.gt is None else t.gt)
    for a, b in itertools.pairwise(ordered):
        if a.lte is None or (b.gt if b.gt is not None else -1) < a.lte:
            where.add(f"overlapping tiers: {a.label()} and {b.label()}")
    return tuple(ordered)


def _minutes(hh: str, mm: str) -> int:
    return int(hh) * 60 + int(mm)


def _valid_window(sh: int, sm: int, eh: int, em: int) -> bool:
    end_ok = eh < 24 or (eh == 24 and em == 0)
    return sh < 24 and sm < 60 and em < 60 and end_ok and (sh, sm) != (eh, em)


def _windows(value: Any, where: _Where) -> tuple[Window, ...]:
    windows: list[Window] = []
    for inside, raw in _mappings(value, "time_of_day", WINDOW_FIELDS, where):
        text = raw.get("window_utc")
        m = _WINDOW.match(text) if isinstance(text, str) else None
        if m is None or not _valid_window(*(int(g) for g in m.groups())):
            where.add(f"{inside}'window_utc' must look like \"16:30-00:30\" (UTC, start != end), got {text!r}")
            continue
        start, end = _minutes(m[1], m[2]), _minutes(m[3], m[4])
        windows.append(Window(start, end, str(text), _prices(raw, where, inside)))
    minutes = [{m for m in range(1440) if w.contains(m)} for w in windows]
    for i in range(len(windows)):
        for j in range(i + 1, len(windows)):
            if minutes[i] & minutes[j]:
                where.add(f"overlapping time_of_day windows {windows[i].text} and {windows[j].text}")
    return tuple(windows)


def _services(raw: Mapping[str, Any], where: _Where) -> dict[str, Prices]:
    out: dict[str, Prices] = {}
    value = raw.get("service_tiers")
    if value is not None:
        if not isinstance(value, dict):
            where.add("'service_tiers' must be a mapping like {flex: {...}, priority: {...}}")
        else:
            for name, layer in value.items():
                out[str(name)] = _layer(layer, f"service_tiers.{name}: ", where)
    if raw.get("batch") is not None:
        if "batch" in out:
            where.add("batch prices given both as 'batch' and as 'service_tiers.batch'")
        out["batch"] = _layer(raw["batch"], "batch: ", where)
    return out


def _layer(value: Any, inside: str, where: _Where) -> Prices:
    if not isinstance(value, dict):
        where.add(f"{inside}expected a mapping of prices")
        return MappingProxyType({})
    for key in value:
        if key not in PRICE_FIELDS:
            where.add(f"{inside}unknown field {key!r}")
    return _prices(value, where, inside)


def _check_info(info: Mapping[str, Any], where: _Where) -> None:
    unit = info.get("unit", UNIT)
    if unit != UNIT:
        where.add(f"'unit' must be {UNIT!r} (all amounts are per 1,000,000 tokens), got {unit!r}")
    if "input_audio" in info:
        try:
            parse_amount(info["input_audio"])
        except ValueError as exc:
            where.add(f"'input_audio' {exc}")
    if "uncertain" in info and not isinstance(info["uncertain"], bool):
        where.add(f"'uncertain' must be true or false, got {info['uncertain']!r}")
    source = info.get("source")
    if source is not None and not (
        (isinstance(source, str) and source.strip())
        or (isinstance(source, list) and source and all(isinstance(s, str) for s in source))
    ):
        where.add(f"'source' must be a string or a list of strings, got {source!r}")


def _parse_fx(raw: Any, place: str, problems: list[str]) -> FxRate | None:
    if not isinstance(raw, dict):
        problems.append(f"{place}: expected a mapping, got {type(raw).__name__}")
        return None
    where = _Where(problems, f"{place} ({raw.get('from', '?')}->{raw.get('to', '?')} {raw.get('effective_from', '?')})")
    before = len(problems)
    for key in raw:
        if key not in FX_FIELDS:
            where.add(f"unknown field {key!r}")
    src = _currency(raw.get("from"), "from", where)
    dst = _currency(raw.get("to"), "to", where)
    if src is not None and src == dst:
        where.add(f"'from' and 'to' are both {src}")
    start = _timestamp(raw, "effective_from", where, required=True)
    rate: Decimal | None = None
    if "rate" not in raw:
        where.add("missing field 'rate'")
    else:
        try:
            rate = parse_amount(raw["rate"])
            if rate == 0:
                where.add("'rate' must be greater than zero")
        except ValueError as exc:
            where.add(f"'rate' {exc}")
    if len(problems) > before or src is None or dst is None or start is None or rate is None:
        return None
    info = {k: raw[k] for k in ("source", "notes") if k in raw}
    return FxRate(src, dst, rate, start, MappingProxyType(info), place)
