"""How the dashboard writes numbers, money, times and changes, and escapes everything it prints.

Money keeps its currency: `$1,234.50`, `¥0.0042`, `12.00 CHF`. Amounts of a unit or more show two
decimals, smaller ones four, so a demo's fractions of a cent stay readable; the exact amount travels
alongside in a `<data value>` element (see `money_html`), which is what tests and scrapers read.
"""

from __future__ import annotations

import html
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from storage.tabular import decimal_text

SYMBOLS = {"USD": "$", "CNY": "¥", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$", "SGD": "S$"}
TWO = Decimal("0.01")
FOUR = Decimal("0.0001")
MINUS = "−"


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def money(amount: Decimal, currency: str) -> str:
    """`amount` rounded for reading, with its currency's symbol (or its code after the number)."""
    places = TWO if abs(amount) >= 1 or amount == 0 else FOUR
    shown = amount.quantize(places, rounding=ROUND_HALF_EVEN)
    if amount and not shown:
        return f"<{SYMBOLS.get(currency, '')}0.0001" + ("" if currency in SYMBOLS else f" {currency}")
    sign = MINUS if shown < 0 else ""
    digits = f"{abs(shown):,}"
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency}"


def money_html(amount: Decimal, currency: str) -> str:
    """Money as a `<data>` element: readable text, the exact decimal in `value`, currency in `data-currency`."""
    exact = decimal_text(amount)
    return (
        f'<data value="{exact}" data-currency="{esc(currency)}" title="{exact} {esc(currency)}">'
        f"{esc(money(amount, currency))}</data>"
    )


def moneys_html(amounts: dict[str, Decimal]) -> str:
    """Several currencies' amounts, one per line; a dash when there are none."""
    if not amounts:
        return '<span aria-label="none">–</span>'
    return "<br>".join(money_html(amount, currency) for currency, amount in amounts.items())


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def count_html(value: int | None) -> str:
    return "–" if value is None else f'<data value="{value}">{value:,}</data>'


def compact(value: float) -> str:
    """A short axis label: 950, 12k, 3.4M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return f"{value:g}"


def millis(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


def change(current: Decimal, previous: Decimal) -> tuple[str, str]:
    """Text and direction of the change from `previous` to `current`: ('+12.5%', 'up'), ('new', 'up')."""
    if previous == 0:
        return ("new", "up") if current > 0 else ("±0%", "flat")
    pct = (current - previous) / previous * 100
    if abs(pct) < Decimal("0.05"):
        return "±0%", "flat"
    text = f"{abs(pct):,.1f}%"
    return (f"+{text}", "up") if pct > 0 else (f"{MINUS}{text}", "down")


def when(value: datetime) -> str:
    """A UTC time for a table cell: 2026-03-01 14:05:09."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def iso_z(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()
