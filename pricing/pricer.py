"""What the gateway holds to price requests: the current book, tenant discounts and the reporting currency.

`price()` runs on every request: a dict lookup and a bisect find the entry, the entry's prices were resolved
to Decimals when the book loaded, and the cost is a handful of Decimal multiplications. `reload()` swaps in
a re-read book atomically, or keeps the current one when the new one is invalid or fails the owner's
`check` (the gateway's: the FX rates its budgets need). A book that edits or drops an entry already in force
(`PriceBook.history_edits`) is a correction: it loads with a warning naming each entry to re-price. Models
with no price are counted and logged once per (provider, model), never priced as zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from pricing.book import PriceBook, PriceBookError
from pricing.calculator import ONE, Priced, TokenCounts, Tokens, discount_factor, price_with_rates, unpriced
from pricing.entry import format_ts

log = logging.getLogger("meterway.pricing")

DEFAULT_BOOK = Path(__file__).resolve().parent / "book"
HISTORY_RULE = (
    "The requests these entries priced keep their old costs under the same price id until re-priced "
    "(`meterway reprice --since` the date each names); a price change is a new entry with a later effective_from"
)


def candidates(*models: str | None) -> tuple[str, ...]:
    """The model names to price a request under, in order, without blanks or repeats (for `price_first`)."""
    return tuple(dict.fromkeys(m for m in models if m))


class Pricer:
    """Prices requests against a reloadable price book."""

    def __init__(
        self,
        book_path: str | os.PathLike[str] = DEFAULT_BOOK,
        *,
        discounts: Mapping[str, Decimal] | None = None,
        reporting_currency: str = "USD",
        book: PriceBook | None = None,
        check: Callable[[PriceBook], list[str]] | None = None,
    ) -> None:
        """Load the book at `book_path` (raises PriceBookError if invalid), unless `book` is given already.

        `check` names what else makes a book unusable to the owner, one line per problem; `reload` refuses
        a book it objects to, and the owner checks the first one itself with `problems()`.
        """
        self.book_path = Path(book_path)
        self.check = check
        self.reporting_currency = reporting_currency
        self.discounts = dict(discounts or {})
        self._factors = {tenant: discount_factor(pct) for tenant, pct in self.discounts.items()}
        self.book = book if book is not None else PriceBook.load(book_path, reporting_currency=reporting_currency)
        self.unpriced_counts: dict[tuple[str, str], int] = {}
        self._warned: set[tuple[str, str]] = set()

    @property
    def version(self) -> str:
        return self.book.version

    def problems(self, book: PriceBook | None = None) -> list[str]:
        """What `check` finds wrong with `book` (default: the current one)."""
        return [] if self.check is None else self.check(book if book is not None else self.book)

    def reload(self) -> tuple[bool, str]:
        """Re-read the book from `book_path`; on failure keep the current book and say why. A book that
        edits or drops an entry already in force is a correction: it loads, with a warning naming each such
        entry, since the requests it priced keep their old costs under its price id until re-priced."""
        try:
            book = PriceBook.load(self.book_path, reporting_currency=self.reporting_currency)
            if problems := self.problems(book):
                raise PriceBookError(problems)
        except PriceBookError as exc:
            reason = "; ".join(exc.problems)
            log.error("price book reload failed, keeping version %s: %s", self.book.version, reason)
            return False, reason
        old, self.book = self.book, book
        self._warned.clear()
        log.info("price book reloaded: version %s -> %s, %d entries", old.version, book.version, len(book.entries))
        message = f"loaded version {book.version}: {len(book.entries)} entries"
        if edits := old.history_edits(book, datetime.now(UTC)):
            warning = f"{'; '.join(edits)}. {HISTORY_RULE}"
            log.warning("price book reload corrected entries already in force: %s", warning)
            message += f"; corrected entries already in force: {warning}"
        return True, message

    def price(
        self,
        tokens: TokenCounts,
        *,
        provider: str,
        model: str,
        at: datetime,
        thinking: bool = False,
        tenant: str | None = None,
        service_tier: str | None = None,
    ) -> Priced:
        """Price one request made at `at` (timezone-aware) to `model` on `provider` (its price_as name)."""
        return self.price_first(
            tokens,
            provider=provider,
            models=(model,),
            at=at,
            thinking=thinking,
            tenant=tenant,
            service_tier=service_tier,
        )

    def price_first(
        self,
        tokens: TokenCounts,
        *,
        provider: str,
        models: Sequence[str],
        at: datetime,
        thinking: bool = False,
        tenant: str | None = None,
        service_tier: str | None = None,
    ) -> Priced:
        """Price with the first of `models` that has an entry in force (e.g. a reported snapshot, then
        the name asked for); unpriced, with a warning naming the first, when none has. A request that names
        no model (a raw `GET .../models`) is unpriced without one: there is no price to be missing."""
        if not models:
            return unpriced()
        book = self.book
        entry = None
        model = models[0] if models else ""
        for candidate in models:
            entry = book.entry_for(provider, candidate, at)
            if entry is not None:
                model = candidate
                break
        if entry is None:
            self._unpriced(provider, model, "no price book entry")
            return unpriced()
        factor = self._factors.get(tenant) if tenant is not None else None
        priced = price_with_rates(
            entry,
            entry.rates_for(tokens.input_tokens, at, service_tier),
            tokens,
            at=at,
            thinking=thinking,
            factor=factor if factor is not None else ONE,
            book=book,
            reporting_currency=self.reporting_currency,
        )
        if priced.pricing_status == "unpriced":
            self._unpriced(provider, model, f"{entry.price_id} has no output price for this request")
        return priced

    def _unpriced(self, provider: str, model: str, why: str) -> None:
        key = (provider, model)
        self.unpriced_counts[key] = self.unpriced_counts.get(key, 0) + 1
        if key not in self._warned:
            self._warned.add(key)
            log.warning("unpriced request: provider %r model %r (%s); its cost is recorded as NULL", *key, why)

    def quote(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        at: datetime | None = None,
        tenant: str | None = None,
        *,
        thinking: bool = False,
        service_tier: str | None = None,
        discount_percent: Decimal | None = None,
    ) -> dict[str, Any]:
        """A pre-request estimate with its breakdown, JSON-serializable (Decimals as strings).

        `discount_percent` overrides the tenant's configured discount.
        """
        when = at if at is not None else datetime.now(UTC)
        book = self.book
        pct = discount_percent if discount_percent is not None else self.discounts.get(tenant or "")
        tokens = Tokens(input_tokens=input_tokens, cached_input_tokens=cached_tokens, output_tokens=output_tokens)
        out: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "at": format_ts(when),
            "tenant": tenant,
            "discount_percent": _text(pct),
            "tokens": {"input": input_tokens, "cached_input": cached_tokens, "output": output_tokens},
            "thinking": thinking,
            "service_tier": service_tier,
            "book_version": book.version,
            "reporting_currency": self.reporting_currency,
        }
        entry = book.entry_for(provider, model, when)
        if entry is None:
            return {**out, "pricing_status": "unpriced", "price_id": None, "currency": None, "cost_reporting": None}
        key = entry.situation(input_tokens, when, service_tier)
        rates = entry.rates(key)
        priced = price_with_rates(
            entry,
            rates,
            tokens,
            at=when,
            thinking=thinking,
            factor=discount_factor(pct),
            book=book,
            reporting_currency=self.reporting_currency,
        )
        return {
            **out,
            "pricing_status": priced.pricing_status,
            "price_id": entry.price_id,
            "model_priced_as": entry.model,
            "currency": entry.currency,
            "applied": entry.describe(key),
            "unit_prices_per_1m": {name: _text(v) for name, v in rates.as_dict().items()},
            "costs": {
                "input": _text(priced.input_cost),
                "cached_input": _text(priced.cached_input_cost),
                "cache_write": _text(priced.cache_write_cost),
                "output": _text(priced.output_cost),
                "per_request": _text(priced.per_request_cost),
                "total": _text(priced.total_cost),
            },
            "fx_rate": _text(book.fx_rate(entry.currency, self.reporting_currency, when)),
            "cost_reporting": _text(priced.cost_reporting),
        }


def _text(value: Decimal | None) -> str | None:
    """A Decimal as a plain decimal string (no exponent), None kept."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class EventPricing(Protocol):
    """What prices an event: a `Pricer` behind the gateway's model choice (gateway.costing.EventPricer)."""

    reporting_currency: str

    def price_event(
        self,
        usage: TokenCounts,
        *,
        provider: str,
        models: tuple[str, ...],
        at: datetime,
        thinking: bool,
        tenant: str | None,
        service_tier: str | None = None,
    ) -> Priced: ...
