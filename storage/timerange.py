"""Time ranges for reports: parsing what users type, and planning which rollup answers which part.

Times are ISO 8601 dates or date-times (UTC unless an offset is given) or an age relative to now
(`90m`, `36h`, `7d`, `4w`). A range is half-open, [since, until). Reports read rollups, so a
range is widened to whole hours (since rounded down, until rounded up) and the answer says which
range it covers. `plan()` splits a range into the coarsest buckets that tile it exactly: hours at
the ragged ends, days in between, whole months in the middle, so a report over years touches a
few hundred rollup rows per key, not millions of events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_RELATIVE = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MONTH = re.compile(r"(\d{4})-(\d{2})")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the times a query may name: room to round and step either way
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
FORMS = "an ISO 8601 date or time (2025-03-01, 2025-03-01T12:00:00Z) or an age like 36h or 7d"


class QueryError(ValueError):
    """A bad request parameter; `param` names it and the message says what was expected."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = f"{param}: {message}"


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: datetime | None  # None: from the first event
    until: datetime

    def as_dict(self) -> dict[str, str | None]:
        return {"since": iso(self.since) if self.since else None, "until": iso(self.until)}


def iso(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def parse_time(param: str, value: str, now: datetime) -> datetime:
    text = value.strip()
    rel = _RELATIVE.fullmatch(text)
    try:
        if rel:
            when = now - timedelta(**{_UNITS[rel.group(2)]: int(rel.group(1))})
        elif len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        raise QueryError(param, _out_of_range(value)) from None
    except ValueError:
        raise QueryError(param, f"expected {FORMS}, got {value!r}") from None
    if not EARLIEST <= when <= LATEST:
        raise QueryError(param, _out_of_range(value))
    return when


def _out_of_range(value: str) -> str:
    return f"{value!r} is out of range: times go from {EARLIEST.date()} to {LATEST.date()}"


def parse_range(
    since: str | None, until: str | None, now: datetime, default_span: timedelta | None = None, exact: bool = False
) -> TimeRange:
    """Parse and validate a [since, until) range; `default_span` fills a missing since. Rounds to hours unless exact."""
    end = parse_time("until", until, now) if until else now
    start = parse_time("since", since, now) if since else (end - default_span if default_span else None)
    if start is not None and start >= end:
        raise QueryError("since", f"must be before until ({iso(start)} is not before {iso(end)})")
    if exact:
        return TimeRange(start, end)
    return TimeRange(floor(start, "hour") if start else None, ceil(end, "hour"))


def parse_month(value: str) -> TimeRange:
    m = _MONTH.fullmatch(value.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or not EARLIEST.year <= int(m.group(1)) < LATEST.year:
        raise QueryError("month", f"expected a month like 2025-03 (years {EARLIEST.year} to {LATEST.year - 1}), "
                         f"got {value!r}")  # fmt: skip
    start = datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC)
    return TimeRange(start, add_month(start))


def add_month(when: datetime) -> datetime:
    return when.replace(year=when.year + when.month // 12, month=when.month % 12 + 1)


def floor(when: datetime, grain: str) -> datetime:
    when = when.astimezone(UTC)
    if grain == "hour":
        return when.replace(minute=0, second=0, microsecond=0)
    if grain == "day":
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    return when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def ceil(when: datetime, grain: str) -> datetime:
    down = floor(when, grain)
    if down == when:
        return down
    if grain == "hour":
        return down + timedelta(hours=1)
    if grain == "day":
        return down + timedelta(days=1)
    return add_month(down)


Part = tuple[str, datetime | None, datetime]  # (grain, since or None, until)


def plan(rng: TimeRange, finest: str = "month") -> list[Part]:
    """Tile an hour-aligned range with hour, day and month buckets; no bucket coarser than `finest`."""
    s, u = rng.since, rng.until
    if finest == "hour":
        return [("hour", s, u)]
    d1 = ceil(s, "day") if s is not None else None
    d2 = floor(u, "day")
    if s is not None and d1 is not None and d1 >= d2:
        return [("hour", s, u)]
    parts: list[Part] = []
    if s is not None and d1 is not None and s < d1:
        parts.append(("hour", s, d1))
    if d2 < u:
        parts.append(("hour", d2, u))
    if finest == "day":
        return [*parts, ("day", d1, d2)]
    m1 = ceil(d1, "month") if d1 is not None else None
    m2 = floor(d2, "month")
    if d1 is not None and m1 is not None and m1 >= m2:
        return [*parts, ("day", d1, d2)]
    if d1 is not None and m1 is not None and d1 < m1:
        parts.append(("day", d1, m1))
    if m2 < d2:
        parts.append(("day", m2, d2))
    return [*parts, ("month", m1, m2)]
