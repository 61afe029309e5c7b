"""Query results as tables, and the three ways they leave: JSON records, CSV, a terminal table.

Money stays Decimal until it is written: JSON and CSV carry exact decimal strings (never floats),
the terminal table rounds to six places for reading. Times are written as ISO 8601 UTC with `Z`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

from storage.timerange import iso

_SHOWN = Decimal("0.000001")


@dataclass(slots=True)
class Table:
    columns: list[str]
    rows: list[list[Any]]
    brief: list[str] = field(default_factory=list)  # the columns a terminal shows; all when empty

    def records(self) -> list[dict[str, Any]]:
        return [{c: jsonable(v) for c, v in zip(self.columns, row, strict=True)} for row in self.rows]


def decimal_text(value: Decimal) -> str:
    """A Decimal as a plain string without exponent or trailing zeros: 0.000150000000 -> 0.00015."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(jsonable(value))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def to_csv(table: Table, spreadsheet: bool = False) -> str:
    """The table as CSV. `spreadsheet`: for a download opened in a spreadsheet, a text cell that a spreadsheet
    would run as a formula (tenant names and tags come from clients) starts with `'`, which it shows as text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else _csv_cell(v, spreadsheet) for v in row])
    return out.getvalue()


def _csv_cell(value: Any, spreadsheet: bool) -> Any:
    if not isinstance(value, str):  # numbers stay numbers: a negative amount is no formula
        cell = jsonable(value)
        if not isinstance(cell, (dict, list)):
            return cell
        value = orjson.dumps(cell).decode()
    return "'" + value if spreadsheet and value.startswith(FORMULA_STARTS) else value


def to_terminal(table: Table) -> str:
    """An aligned, readable table: numbers right-aligned with thousands separators."""
    names = table.brief or table.columns
    index = [table.columns.index(n) for n in names]
    cells = [[_shown(row[i]) for i in index] for row in table.rows]
    numeric = [_numeric([row[i] for row in table.rows]) for i in index]
    widths = [max([len(n), *(len(r[k]) for r in cells)]) for k, n in enumerate(names)]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in cells] or ["(no data)"]
    return "\n".join([line(names), rule, *body]) + "\n"


def _numeric(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, Decimal)) and not isinstance(v, bool) for v in present)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Decimal):
        return f"{value.quantize(_SHOWN, rounding=ROUND_HALF_EVEN):,}"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return "; ".join(f"{k} {_shown(v)}" for k, v in value.items())
    return str(value)
