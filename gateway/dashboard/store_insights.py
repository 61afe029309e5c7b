"""`Insights` computed from the event store with governance's pure functions: what needs no ledger.

- budgets: the budget ledger's status when the gateway has one (spend, reservations of requests in
  flight, reset time). Without a ledger, each configured budget (`budgets:` in config) with its
  period's spend read from the rollups, converted from the reporting currency into the budget's
  with the price book's FX; a budget on a gateway key or a model glob is then left out, as the
  rollups carry no keys and match no globs.
- anomalies: `governance.anomaly.detect_all` over each tenant's hourly spend and tokens, for the
  last 24 hours against the same hours of the previous days, with the rules of `alerts.anomaly`.
  Computed when a page is drawn, so nothing here is stored or notified.
- forecast: `governance.forecast.forecast_month_end` over the last 56 days of daily spend.
- recommendations: `governance.recommend.recommend` over the last 7 days per tenant, provider and
  model, priced with the current book.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.dashboard.insights import AnomalyView, BudgetView, ForecastView, RecommendationView
from governance.anomaly import AnomalyRules, detect_all
from governance.budgets import BudgetStatus
from governance.config import GovernanceConfig
from governance.forecast import forecast_month_end
from governance.periods import period_bounds
from governance.recommend import UsageAggregate, recommend
from pricing.book import PriceBook
from storage import queries
from storage.timerange import TimeRange, ceil, floor

if TYPE_CHECKING:
    import duckdb

    from gateway.app import Gateway
    from storage.duckdb_sink import DuckDBSink

HISTORY_DAYS = 56
ADVICE_DAYS = 7
LATEST_HOURS = 24


class StoreInsights:
    def __init__(
        self,
        sink: DuckDBSink,
        reporting_currency: str,
        governance: GovernanceConfig,
        book: PriceBook | None = None,
        price_as: Mapping[str, str] | None = None,
        discounts: Mapping[str, Decimal] | None = None,
        budget_status: Callable[[datetime], Sequence[BudgetStatus]] | None = None,
    ) -> None:
        self.sink = sink
        self.currency = reporting_currency
        self.governance = governance
        self.book = book
        self.price_as = dict(price_as or {})
        self.discounts = dict(discounts or {})
        self.budget_status = budget_status

    @classmethod
    def for_gateway(cls, gw: Gateway) -> StoreInsights:
        price_as = {name: p.pricing_provider for name, p in gw.config.providers.items()}
        status = gw.governance.status_now if gw.governance is not None else None
        return cls(gw.sink, gw.pricer.reporting_currency, gw.config.governance, gw.pricer.pricer.book, price_as,
                   gw.config.discounts, status)  # fmt: skip

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.sink.reader() as cur:
            yield cur

    def budgets(self, tenant: str | None, now: datetime) -> Sequence[BudgetView] | None:
        if self.budget_status is not None:
            statuses = self.budget_status(now)
            if not statuses:
                return None
            return [
                BudgetView(s.budget.name, s.budget.selector.describe(), s.budget.period, s.spent, s.budget.limit,
                           s.budget.currency, s.resets_at, s.budget.hard, s.reserved)
                for s in statuses
                if tenant is None or s.budget.selector.tenant == tenant
            ]  # fmt: skip
        budgets = self.governance.budgets
        if not budgets:
            return None
        out = []
        with self._cursor() as cur:
            for budget in budgets:
                sel = budget.selector
                if sel.key is not None or (sel.model is not None and any(c in sel.model for c in "*?[")):
                    continue
                if tenant is not None and sel.tenant != tenant:
                    continue
                rate = self.book.fx_rate(self.currency, budget.currency, now) if self.book else None
                if rate is None:
                    continue
                start, end = period_bounds(budget.period, now)
                filters = queries.Filters(sel.tenant, sel.provider, sel.model, sel.feature)
                spent = queries.totals(cur, TimeRange(start, ceil(now, "hour")), filters, self.currency)
                out.append(BudgetView(budget.name, sel.describe(), budget.period, spent["cost_reporting"] * rate,
                                      budget.limit, budget.currency, end, budget.hard))  # fmt: skip
        return out

    def anomalies(self, tenant: str | None, now: datetime) -> Sequence[AnomalyView] | None:
        config = self.governance.alerts.anomaly
        if not config.enabled:
            return None
        end = ceil(now, "hour")
        rng = TimeRange(end - timedelta(days=config.baseline_days + 1), end)
        with self._cursor() as cur:
            series = queries.series_by(cur, "tenant", "hour", rng, queries.Filters(tenant=tenant), self.currency)
        hours = [end - timedelta(hours=h) for h in range(1, LATEST_HOURS + 1)]
        found = []
        spend = {t: [(hour, cost) for hour, cost, _ in rows] for t, rows in series.items()}
        tokens = {t: [(hour, Decimal(n)) for hour, _, n in rows] for t, rows in series.items()}
        for metric, unit, points in (("spend", self.currency, spend), ("tokens", "", tokens)):
            rules = AnomalyRules.from_config(config, metric)
            found += detect_all(points, metric=metric, rules=rules, hours=hours, unit=unit)
        found.sort(key=lambda a: (a.hour, a.observed), reverse=True)
        return [AnomalyView(a.tenant, a.metric, a.hour, a.observed, a.baseline_mean, a.ratio, a.unit or "tokens",
                            a.message()) for a in found]  # fmt: skip

    def forecast(self, tenant: str | None, now: datetime) -> ForecastView | None:
        today = floor(now, "day")
        rng = TimeRange(today - timedelta(days=HISTORY_DAYS), ceil(now, "hour"))
        with self._cursor() as cur:
            table = queries.costs_by(cur, "day", rng, queries.Filters(tenant=tenant))
        daily, so_far = [], Decimal(0)
        for row in table.rows:
            day, cost, reporting = row[0], row[-2], row[-1]
            if reporting != self.currency:
                continue
            if day < today.date():
                daily.append((day, cost))
            else:
                so_far += cost
        f = forecast_month_end(daily, now, today_so_far=so_far)
        return ForecastView(f.month, f.spent, f.expected, f.low, f.high, self.currency, f.method)

    def recommendations(self, tenant: str | None, now: datetime) -> Sequence[RecommendationView] | None:
        if self.book is None:
            return None
        end = ceil(now, "hour")
        with self._cursor() as cur:
            bill = queries.bill(cur, TimeRange(end - timedelta(days=ADVICE_DAYS), end), self.currency)
        aggregates = [a for t in bill["tenants"] if tenant is None or t["tenant_id"] == tenant for a in self._usage(t)]
        found = recommend(
            aggregates, self.book, at=now, window_days=ADVICE_DAYS, reporting_currency=self.currency,
            providers=set(self.price_as.values()) or None, discounts=self.discounts,
        )  # fmt: skip
        return [RecommendationView(r.kind, r.tenant, r.provider, r.model, r.advice, r.monthly_saving, r.currency)
                for r in found[:10]]  # fmt: skip

    def _usage(self, tenant: dict[str, Any]) -> list[UsageAggregate]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for line in tenant["lines"]:
            if not line["provider"] or not line["model"]:
                continue
            key = (self.price_as.get(line["provider"], line["provider"]), line["model"])
            agg = merged.setdefault(key, {"requests": 0, "input_tokens": 0, "cached_input_tokens": 0,
                                          "output_tokens": 0, "cost": Decimal(0)})  # fmt: skip
            for name in ("requests", "input_tokens", "cached_input_tokens", "output_tokens"):
                agg[name] += line[name]
            if line["reporting_currency"] == self.currency:
                agg["cost"] += line["cost_reporting"]
        out = []
        for (provider, model), a in merged.items():
            if a["requests"]:
                prompt = Decimal(a["input_tokens"]) / a["requests"]
                usage = UsageAggregate(provider, model, a["requests"], a["input_tokens"], a["cached_input_tokens"],
                                       a["output_tokens"], prompt, a["cost"], tenant=tenant["tenant_id"])  # fmt: skip
                out.append(usage)
        return out
