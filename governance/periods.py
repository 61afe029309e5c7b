"""Budget periods in UTC: a day starts at 00:00, a week on Monday 00:00 (ISO weeks), a month on the 1st.

`period_bounds(period, at)` gives the period holding `at` as `[start, end)`; `end` is when the
budget resets. Every time here is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive time is refused rather than guessed."""
    if at.tzinfo is None:
        raise ValueError("expected a timezone-aware time")
    return at.astimezone(UTC)


def period_start(period: str, at: datetime) -> datetime:
    day = utc(at).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def period_end(period: str, start: datetime) -> datetime:
    """The start of the next period after the one starting at `start`."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    raise ValueError(f"unknown budget period {period!r}")


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    start = period_start(period, at)
    return start, period_end(period, start)


def iso_z(at: datetime) -> str:
    """`2025-06-01T00:00:00Z`."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_time(field: str, value: Any, example: str) -> datetime:
    """`value` of a request's `field` as an aware time (UTC when it names no offset); a ValueError naming
    the field and what it takes otherwise."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None:
        raise ValueError(f"'{field}' must be an ISO 8601 date or time like {example}, got {value!r}")
    return at if at.tzinfo else at.replace(tzinfo=UTC)
