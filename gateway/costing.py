"""The gateway's view of pricing: which model name prices an event, and reload on demand.

A provider often reports a dated snapshot (`gpt-4o-mini-2024-07-18`) for a requested alias; the
book may list either. The first candidate the book has an entry for prices the event, so a
listed snapshot wins and an unlisted one falls back to the name that was asked for, never to a
guess. When none is listed, the event is `unpriced` (NULL costs), never zero.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.config import Config, ConfigError
from governance.budget_fx import fx_problems
from pricing.book import PriceBook, PriceBookError
from pricing.calculator import Priced, TokenCounts
from pricing.pricer import Pricer


class EventPricer:
    def __init__(self, pricer: Pricer) -> None:
        self.pricer = pricer
        self.reporting_currency = pricer.reporting_currency

    @classmethod
    def from_config(cls, config: Config) -> EventPricer:
        """The config's book; a reload is refused when the new book lacks an FX rate a budget needs."""
        budgets = config.governance.budgets
        price_as = {name: p.pricing_provider for name, p in config.providers.items()}

        def check(book: PriceBook) -> list[str]:
            return fx_problems(budgets, book, price_as, datetime.now(UTC)) if budgets else []

        return cls(
            Pricer(
                config.pricing.book,
                discounts=config.discounts,
                reporting_currency=config.pricing.reporting_currency,
                check=check,
            )
        )

    @classmethod
    def load(cls, config: Config) -> EventPricer:
        """`from_config` for starting a gateway: a book that does not load, or that has no FX rate a budget
        needs, raises ConfigError, one line per problem, so `serve` refuses it with the config's other errors
        instead of a traceback or a budget that refuses every request."""
        where = f"{config.path}: " if config.path is not None else ""
        try:
            pricer = cls.from_config(config)
        except PriceBookError as exc:
            raise ConfigError([f"{where}price book {config.pricing.book}: {p}" for p in exc.problems]) from None
        if problems := pricer.pricer.problems():
            raise ConfigError([f"{where}{p}" for p in problems])
        return pricer

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
    ) -> Priced:
        return self.pricer.price_first(
            usage, provider=provider, models=models, at=at, thinking=thinking, tenant=tenant, service_tier=service_tier
        )

    def loaded(self) -> bool:
        return self.pricer.book is not None

    def reload(self) -> tuple[bool, str]:
        return self.pricer.reload()  # which logs the outcome
