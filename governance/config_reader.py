"""Reading one mapping of config.yaml with a problem line per bad key, in the style of gateway/config.py.

`Reader(where, mapping, allowed, problems)` flags unknown keys, then each typed getter returns the
value or a default and records `where.key: expected ..., got ...` when the value is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any


class Reader:
    """Reads one mapping, recording a problem per bad key under the mapping's path."""

    def __init__(self, where: str, value: dict[str, Any], allowed: set[str], problems: list[str]) -> None:
        self.where, self.value, self.problems = where, value, problems
        for key in value:
            if key not in allowed:
                self.problem(str(key), f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.where}.{key}: {text}")

    def text(
        self, key: str, *, pattern: re.Pattern[str] | None = None, expected: str = "a non-empty string"
    ) -> str | None:
        value = self.value.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
            self.problem(key, f"expected {expected}, got {value!r}")
            return None
        if pattern is not None and not pattern.fullmatch(str(value)):
            self.problem(key, f"expected {expected}, got {value!r}")
            return None
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {value!r}")
            return default
        return value

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.value.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.problem(key, f"expected an integer from {lo} to {hi}, got {value!r}")
            return default
        return value

    def decimal(self, key: str, default: Decimal | None, *, positive: bool = True) -> Decimal | None:
        value = self.value.get(key, default)
        if value is None or isinstance(value, Decimal):
            return value
        amount = to_decimal(value)
        if amount is None or (amount <= 0 if positive else amount < 0):
            kind = "a positive" if positive else "a non-negative"
            self.problem(key, f'expected {kind} decimal amount like "50" or "0.5", got {value!r}')
            return default
        return amount

    def env_secret(self, key: str, env: Mapping[str, str]) -> tuple[str | None, str | None]:
        name = self.text(key, expected="the name of an environment variable")
        if name is None:
            return None, None
        secret = env.get(name)
        if not secret:
            self.problem(key, f"environment variable {name} is not set")
            return name, None
        return name, secret


def to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def mapping(raw: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a mapping, got {type(value).__name__}")
        return {}
    return value


def items_of(raw: Mapping[str, Any], name: str, problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{name}: expected a list of mappings, got {type(value).__name__}")
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append((f"{name}[{i}]", item))
        else:
            problems.append(f"{name}[{i}]: expected a mapping, got {type(item).__name__}")
    return out
