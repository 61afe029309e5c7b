"""Shared helpers for the pricing tests."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(text: str) -> datetime:
    """`2025-02-08T16:00:00` (or a date) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
