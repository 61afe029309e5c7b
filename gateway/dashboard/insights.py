"""The governance side of the dashboard: budgets, anomalies, forecast and recommendations, behind one seam.

The dashboard renders these four sections from an `Insights` object whose methods return plain data
(the `...View` records below). `None` means "not configured" and the section says so; an empty list
means configured with nothing to show. `NotConfigured` is the default that knows nothing;
`gateway.dashboard.store_insights.StoreInsights` computes what the event store can tell; a
governance service that owns budget ledgers and alert state can provide its own implementation.

Methods are called from a worker thread, never on the event loop, with the tenant of a tenant page
(None for the overview) and the time the page is drawn for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BudgetView:
    name: str
    scope: str  # what it applies to, e.g. "tenant acme" or "everything"
    period: str  # day | week | month
    spent: Decimal
    limit: Decimal
    currency: str
    resets_at: datetime
    hard: bool = False
    reserved: Decimal = Decimal(0)  # held for requests in flight

    @property
    def remaining(self) -> Decimal:
        return max(self.limit - self.spent - self.reserved, Decimal(0))

    @property
    def used(self) -> Decimal:
        """The share of the limit spent, 0 to 1 (more when over)."""
        return self.spent / self.limit if self.limit else Decimal(0)


@dataclass(frozen=True, slots=True)
class AnomalyView:
    tenant: str
    metric: str  # spend | tokens
    hour: datetime
    observed: Decimal
    baseline_mean: Decimal
    ratio: Decimal | None  # observed / mean; None over a zero baseline
    unit: str  # a currency for spend, "tokens" for tokens
    message: str


@dataclass(frozen=True, slots=True)
class ForecastView:
    month: date  # first day of the month forecast
    spent: Decimal  # so far this month
    expected: Decimal  # at month end
    low: Decimal
    high: Decimal
    currency: str
    method: str


@dataclass(frozen=True, slots=True)
class RecommendationView:
    kind: str
    tenant: str | None
    provider: str
    model: str
    advice: str
    monthly_saving: Decimal
    currency: str


class Insights(Protocol):
    def budgets(self, tenant: str | None, now: datetime) -> Sequence[BudgetView] | None: ...

    def anomalies(self, tenant: str | None, now: datetime) -> Sequence[AnomalyView] | None: ...

    def forecast(self, tenant: str | None, now: datetime) -> ForecastView | None: ...

    def recommendations(self, tenant: str | None, now: datetime) -> Sequence[RecommendationView] | None: ...


class NotConfigured:
    """Every section reads "not configured"."""

    def budgets(self, tenant: str | None, now: datetime) -> Sequence[BudgetView] | None:
        return None

    def anomalies(self, tenant: str | None, now: datetime) -> Sequence[AnomalyView] | None:
        return None

    def forecast(self, tenant: str | None, now: datetime) -> ForecastView | None:
        return None

    def recommendations(self, tenant: str | None, now: datetime) -> Sequence[RecommendationView] | None:
        return None


@dataclass(frozen=True, slots=True)
class InsightsData:
    """What the four sections show on one page."""

    budgets: Sequence[BudgetView] | None
    anomalies: Sequence[AnomalyView] | None
    forecast: ForecastView | None
    recommendations: Sequence[RecommendationView] | None


def gather(insights: Insights, tenant: str | None, now: datetime) -> InsightsData:
    return InsightsData(
        insights.budgets(tenant, now),
        insights.anomalies(tenant, now),
        insights.forecast(tenant, now),
        insights.recommendations(tenant, now),
    )
