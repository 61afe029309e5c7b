"""What governance reads from the event store, with the evidence the dashboard's views leave out.

`GovernanceInsights` is the dashboard's `StoreInsights` (same rollups, price book, provider mapping
and discounts) returning whole records for the anomaly schedule, the spend reports and `/admin`:

- `detect(now)`: `Anomaly` records (baseline, z-score, ratio, rules fired) among the last 24 hours,
  each tenant's hourly spend and tokens against the same hours of the previous days;
- `forecasts(now)`: month-end `MonthForecast`s overall and per tenant (all, the biggest, or one),
  fitted on the daily spend of the last 56 days (`governance.forecast.forecast_month_end`);
- `budget_outlooks(statuses, now)`: when each budget runs out at the current rate
  (`governance.forecast.runs_out_at` on a model fitted to the spend the budget covers);
- `advice(tenant, now)`: every `Recommendation` over the last 7 days, with its evidence;
- `spend_summary(period, fired_at, ...)`: the figures of a daily or weekly spend report.

Every method reads DuckDB: call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.dashboard.store_insights import ADVICE_DAYS, HISTORY_DAYS, LATEST_HOURS, StoreInsights
from governance.anomaly import Anomaly, AnomalyRules, detect_all
from governance.budgets import BudgetStatus
from governance.forecast import DailyPoint, MonthForecast, fit, forecast_month_end, runs_out_at, total_series
from governance.recommend import Recommendation, recommend
from governance.reports import BudgetLine, SpendSummary, report_window
from storage import queries
from storage.queries import NONE_KEY, Filters
from storage.timerange import TimeRange, ceil, floor

if TYPE_CHECKING:
    from gateway.app import Gateway

ZERO = Decimal(0)
RECENT_DAYS = 7  # which tenants are the biggest, when only some get a forecast
Series = Mapping[str, Sequence[tuple[datetime, Decimal, int]]]


@dataclass(frozen=True, slots=True)
class BudgetOutlook:
    status: BudgetStatus
    runs_out_at: datetime | None  # None: not before the budget resets, or unknown (see `note`)
    daily_rate: Decimal | None  # today's expected spend, in the budget's currency
    note: str | None = None  # why there is no estimate


def _day(bucket: datetime) -> date:
    return bucket.astimezone(UTC).date() if bucket.tzinfo is not None else bucket.date()


def _split(series: Series, today: date) -> tuple[dict[str, list[DailyPoint]], dict[str, Decimal]]:
    """Each key's complete days before `today`, and what it spent today so far."""
    daily: dict[str, list[DailyPoint]] = {}
    so_far: dict[str, Decimal] = {}
    for key, rows in series.items():
        daily[key] = [(_day(bucket), cost) for bucket, cost, _ in rows if _day(bucket) < today]
        so_far[key] = sum((cost for bucket, cost, _ in rows if _day(bucket) >= today), ZERO)
    return daily, so_far


class GovernanceInsights(StoreInsights):
    @classmethod
    def for_gateway(cls, gw: Gateway) -> GovernanceInsights:
        insights = super().for_gateway(gw)
        assert isinstance(insights, GovernanceInsights)
        return insights

    def _daily_series(self, filters: Filters, now: datetime) -> Series:
        rng = TimeRange(floor(now, "day") - timedelta(days=HISTORY_DAYS), ceil(now, "hour"))
        with self._cursor() as cur:
            return queries.series_by(cur, "tenant", "day", rng, filters, self.currency)

    def detect(self, now: datetime) -> list[Anomaly]:
        config = self.governance.alerts.anomaly
        end = ceil(now, "hour")
        rng = TimeRange(end - timedelta(days=config.baseline_days + 1), end)
        with self._cursor() as cur:
            series = queries.series_by(cur, "tenant", "hour", rng, Filters(), self.currency)
        hours = [end - timedelta(hours=h) for h in range(1, LATEST_HOURS + 1)]
        spend = {t: [(hour, cost) for hour, cost, _ in rows] for t, rows in series.items()}
        tokens = {t: [(hour, Decimal(n)) for hour, _, n in rows] for t, rows in series.items()}
        found: list[Anomaly] = []
        for metric, unit, points in (("spend", self.currency, spend), ("tokens", "", tokens)):
            rules = AnomalyRules.from_config(config, metric)
            found += detect_all(points, metric=metric, rules=rules, hours=hours, unit=unit)
        return sorted(found, key=lambda a: (a.hour, a.tenant, a.metric))

    def forecasts(
        self, now: datetime, *, limit: int | None = None, only: str | None = None
    ) -> tuple[dict[str, MonthForecast], MonthForecast]:
        """The overall forecast, and one per tenant: every tenant, the `limit` biggest by their spend over
        the last 7 days, or `only` that one. The overall one is fitted on the total series, not summed."""
        today = floor(now, "day").date()
        daily, so_far = _split(self._daily_series(Filters(), now), today)
        overall = forecast_month_end(total_series(daily.values()), now, today_so_far=sum(so_far.values(), ZERO))
        chosen = list(daily) if only is None else [only] if only in daily else []
        if limit is not None:
            week = today - timedelta(days=RECENT_DAYS)
            recent = {t: so_far[t] + sum((v for d, v in daily[t] if d >= week), ZERO) for t in chosen}
            chosen = sorted(chosen, key=lambda t: (-recent[t], t))[:limit]
        return {t: forecast_month_end(daily[t], now, today_so_far=so_far[t]) for t in chosen}, overall

    def budget_outlooks(self, statuses: Sequence[BudgetStatus], now: datetime) -> list[BudgetOutlook]:
        return [self._outlook(status, now) for status in statuses]

    def _outlook(self, status: BudgetStatus, now: datetime) -> BudgetOutlook:
        budget, sel = status.budget, status.budget.selector
        if sel.key is not None:
            return BudgetOutlook(status, None, None, "a budget on a gateway key: the rollups carry no keys")
        if sel.model is not None and any(c in sel.model for c in "*?["):
            return BudgetOutlook(status, None, None, "a budget on a model pattern: the rollups match no patterns")
        rate = self.book.fx_rate(budget.currency, self.currency, now) if self.book is not None else None
        if rate is None or rate <= 0:
            return BudgetOutlook(status, None, None, f"no FX rate from {budget.currency} to {self.currency}")
        today = floor(now, "day").date()
        series = self._daily_series(Filters(sel.tenant, sel.provider, sel.model, sel.feature), now)
        daily, _ = _split(series, today)
        model = fit(total_series(daily.values()), today - timedelta(days=1))
        spent = (status.spent + status.reserved) * rate
        when = runs_out_at(model, spent=spent, limit=budget.limit * rate, now=now, until=status.resets_at)
        return BudgetOutlook(status, when, model.expected(today) / rate)

    def advice(self, tenant: str | None, now: datetime) -> list[Recommendation] | None:
        """Every recommendation for the last `ADVICE_DAYS` days, biggest monthly saving first (None without a book)."""
        if self.book is None:
            return None
        end = ceil(now, "hour")
        with self._cursor() as cur:
            bill = queries.bill(cur, TimeRange(end - timedelta(days=ADVICE_DAYS), end), self.currency)
        aggregates = [a for t in bill["tenants"] if tenant is None or t["tenant_id"] == tenant for a in self._usage(t)]
        return recommend(
            aggregates, self.book, at=now, window_days=ADVICE_DAYS, reporting_currency=self.currency,
            providers=set(self.price_as.values()) or None, discounts=self.discounts,
        )  # fmt: skip

    def spend_summary(
        self, period: str, fired_at: datetime, budgets: Sequence[BudgetLine] = (), anomalies: int = 0
    ) -> SpendSummary:
        """The report fired at `fired_at` covers the last complete UTC day or ISO week before it."""
        start, end = report_window(period, fired_at)
        window, before = TimeRange(start, end), TimeRange(start - (end - start), start)
        with self._cursor() as cur:
            totals = queries.totals(cur, window, Filters(), self.currency)
            previous = queries.totals(cur, before, Filters(), self.currency)
            by_tenant = self._costs(queries.costs_by(cur, "tenant", window, Filters()).rows)
            by_model = self._costs(queries.costs_by(cur, "model", window, Filters()).rows)
        _, overall = self.forecasts(fired_at, limit=0)
        return SpendSummary(
            start, end, self.currency, totals["cost_reporting"], totals["requests"], totals["total_tokens"],
            previous["cost_reporting"] if previous["requests"] else None, by_tenant, by_model, budgets, anomalies,
            (overall.expected, overall.low, overall.high),
        )  # fmt: skip

    def _costs(self, rows: Sequence[Sequence[object]]) -> list[tuple[str, Decimal]]:
        """(name, cost) of `costs_by` rows in the reporting currency."""
        out = []
        for row in rows:
            cost, currency = row[-2], row[-1]
            if currency == self.currency and isinstance(cost, Decimal):
                out.append((str(row[0] or NONE_KEY), cost))
        return out
