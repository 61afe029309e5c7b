"""Report parameters as strings (query strings, command-line options) turned into validated values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from storage.queries import Filters
from storage.timerange import QueryError, TimeRange, parse_range

RANGE = frozenset({"since", "until"})
FILTERS = frozenset({"tenant", "provider", "model", "feature"})


def check_known(keys: Iterable[str], allowed: frozenset[str]) -> None:
    for key in keys:
        if key not in allowed:
            expected = ", ".join(sorted(allowed)) or "none"
            raise QueryError(key, f"unknown parameter (expected: {expected})")


def range_of(p: Mapping[str, str], default_span: timedelta | None = None, exact: bool = False) -> TimeRange:
    return parse_range(p.get("since"), p.get("until"), datetime.now(UTC), default_span, exact=exact)


def filters_of(p: Mapping[str, str], tenant: str | None = None) -> Filters:
    return Filters(tenant or p.get("tenant"), p.get("provider"), p.get("model"), p.get("feature"))


def limit_of(p: Mapping[str, str], default: int | None, hi: int = 1000) -> int | None:
    if "limit" not in p:
        return default
    text = p["limit"]
    if not text.isdecimal() or not 1 <= int(text) <= hi:
        raise QueryError("limit", f"expected a whole number from 1 to {hi}, got {text!r}")
    return int(text)


def span_for(by: str) -> timedelta | None:
    """The default reach of a report when no `since` is given: hourly series cover 3 days, others everything."""
    return timedelta(days=3) if by == "hour" else None


def flag(name: str, text: str | None) -> bool:
    """A yes/no parameter: true/false, 1/0, yes/no (absent or empty is no); anything else is a QueryError."""
    if text is None or text.lower() in ("", "0", "false", "no"):
        return False
    if text.lower() in ("1", "true", "yes"):
        return True
    raise QueryError(name, f"expected true or false, got {text!r}")
