"""Whether the price book can convert the cost of every request a budget applies to into its currency.

A request's cost is in its price entry's currency. A budget in another currency needs the book's rate
between the two; without one, the ledger refuses every request a hard budget applies to and counts
nothing against a soft one. `fx_problems` finds such budgets when the config and the book are loaded
(`meterway serve`, `meterway prices check --config`) and again for every reloaded book, so neither
such a config starts nor such a book replaces one that has the rates.

The currencies a budget may be charged in are those of the entries in force that its filter can
reach: all of them, or its provider's (by its `price_as` name) and those whose model id or alias
matches its `model` glob.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from governance.config import BudgetConfig

if TYPE_CHECKING:
    from pricing.book import PriceBook


def fx_problems(
    budgets: Sequence[BudgetConfig], book: PriceBook, price_as: Mapping[str, str], at: datetime
) -> list[str]:
    """One line per budget whose currency the book cannot convert some of its requests' costs into at `at`;
    `price_as` maps configured provider names to their price book names."""
    problems = []
    entries = book.in_force(at)
    for budget in budgets:
        selector = budget.selector
        provider = price_as.get(selector.provider) if selector.provider is not None else None
        if selector.provider is not None and provider is None:
            continue  # not a configured provider: no request reaches this budget
        missing = sorted({
            e.currency for e in entries
            if (provider is None or e.provider == provider)
            and (selector.model is None or any(fnmatchcase(name, selector.model) for name in e.names))
            and book.fx_rate(e.currency, budget.currency, at) is None
        })  # fmt: skip
        if not missing:
            continue
        pairs = " or ".join(f"{currency}->{budget.currency}" for currency in missing)
        rates = ", ".join(sorted({f"{r.from_currency}->{r.to_currency}" for r in book.fx})) or "none"
        effect = "be refused" if budget.hard else "not count against it"
        problems.append(
            f"budgets: {budget.name!r} is in {budget.currency}, but the price book has no {pairs} rate "
            f"(its FX rates: {rates}), so the requests it applies to priced in {' or '.join(missing)} would {effect}; "
            "add the rate to the book's fx, or use a currency it converts to"
        )
    return problems
