"""Forecasts on synthetic daily spend with a known trend and weekly cycle, against a straight line."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from governance.forecast import SpendModel, fit, forecast_month_end, forecast_tenants, runs_out_at, total_series

ORIGIN = date(2025, 4, 1)
WEEK = [1.2, 1.25, 1.2, 1.15, 1.0, 0.6, 0.6]  # Monday first: quiet weekends
FACTORS = [f * 7 / sum(WEEK) for f in WEEK]
MONTH_END = date(2025, 6, 30)


def true_spend(day: date) -> float:
    return (100 + 2 * (day - ORIGIN).days) * FACTORS[day.weekday()]


def history(until: date, seed: int = 7, noise: float = 0.05) -> list[tuple[date, Decimal]]:
    """Every day from ORIGIN to the day before `until`, with ±5% noise."""
    rng = random.Random(seed)
    days = [ORIGIN + timedelta(days=i) for i in range((until - ORIGIN).days)]
    return [(d, Decimal(str(round(true_spend(d) * (1 + rng.uniform(-noise, noise)), 4)))) for d in days]


def straight_line(points: list[tuple[date, Decimal]]) -> Callable[[date], float]:
    """Least squares through the last 28 raw daily values: the usual baseline."""
    recent = points[-28:]
    xs = [(d - ORIGIN).days for d, _ in recent]
    ys = [float(v) for _, v in recent]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return lambda d: my + slope * ((d - ORIGIN).days - mx)


@pytest.mark.parametrize("day", [10, 27])
def test_month_end_is_within_4_percent_and_beats_a_straight_line(day: int) -> None:
    now = datetime(2025, 6, day, 12, tzinfo=UTC)
    today = now.date()
    points = history(today)
    so_far = Decimal(str(true_spend(today) / 2))
    forecast = forecast_month_end(points, now, today_so_far=so_far)

    spent = sum(float(v) for d, v in points if d.month == 6) + float(so_far)
    future = [today + timedelta(days=i) for i in range(1, (MONTH_END - today).days + 1)]
    truth = spent + true_spend(today) / 2 + sum(true_spend(d) for d in future)
    line = straight_line(points)
    line_total = spent + line(today) / 2 + sum(line(d) for d in future)

    ours = abs(float(forecast.expected) / truth - 1)
    theirs = abs(line_total / truth - 1)
    assert ours < 0.04, (float(forecast.expected), truth)
    assert ours < theirs
    assert float(forecast.low) <= truth <= float(forecast.high)
    assert forecast.spent == pytest.approx(Decimal(str(spent)), abs=Decimal("1e-9"))
    assert forecast.low >= forecast.spent and forecast.month == date(2025, 6, 1)
    # day by day the weekly pattern is what a straight line cannot follow
    model = forecast.model
    our_daily = sum(abs(float(model.expected(d)) - true_spend(d)) for d in future) / len(future)
    line_daily = sum(abs(line(d) - true_spend(d)) for d in future) / len(future)
    assert our_daily < line_daily / 2


def test_the_weekly_factors_and_trend_are_recovered() -> None:
    model = fit(history(date(2025, 6, 1), noise=0.0), date(2025, 5, 31))
    for got, want in zip(model.factors, FACTORS, strict=True):
        assert float(got) == pytest.approx(want, rel=0.03)
    assert float(model.slope) == pytest.approx(2.0, rel=0.05)
    assert sum(model.factors) == pytest.approx(Decimal(7))


def test_short_and_empty_histories() -> None:
    now = datetime(2025, 6, 5, 0, tzinfo=UTC)
    empty = forecast_month_end([], now)
    assert (empty.expected, empty.low, empty.high) == (Decimal(0),) * 3
    flat = [(date(2025, 6, d), Decimal(10)) for d in range(1, 5)]
    short = forecast_month_end(flat, now)
    assert short.model.factors == (Decimal(1),) * 7
    assert short.expected == Decimal(300)  # 4 days spent + 26 more at 10 a day
    assert short.low == short.high == Decimal(300)  # no scatter in the history at all


def test_per_tenant_and_overall() -> None:
    now = datetime(2025, 6, 20, 6, tzinfo=UTC)
    days = [date(2025, 5, 1) + timedelta(days=i) for i in range(50)]
    series = {"a": [(d, Decimal(10)) for d in days], "b": [(d, Decimal(5)) for d in days]}
    per_tenant, overall = forecast_tenants(series, now, today_so_far={"a": Decimal(3)})
    assert set(per_tenant) == {"a", "b"}
    assert per_tenant["a"].expected == Decimal(190) + Decimal(3) + Decimal("7.5") + 10 * 10
    assert overall.expected == per_tenant["a"].expected + per_tenant["b"].expected
    assert total_series(series.values())[0] == (days[0], Decimal(15))


def test_when_a_budget_runs_out() -> None:
    model = SpendModel(date(2025, 6, 1), Decimal(10), Decimal(0), (Decimal(1),) * 7, Decimal(0), 30)
    now = datetime(2025, 6, 10, 12, tzinfo=UTC)
    end = datetime(2025, 7, 1, tzinfo=UTC)
    assert runs_out_at(model, spent=Decimal(90), limit=Decimal(100), now=now, until=end) == datetime(
        2025, 6, 11, 12, tzinfo=UTC
    )
    assert runs_out_at(model, spent=Decimal(90), limit=Decimal(1000), now=now, until=end) is None
    assert runs_out_at(model, spent=Decimal(100), limit=Decimal(100), now=now, until=end) == now
    weekly = SpendModel(
        date(2025, 6, 1), Decimal(10), Decimal(0), (*[Decimal("1.4")] * 5, Decimal(0), Decimal(0)), Decimal(0), 30
    )
    friday_noon = datetime(2025, 6, 13, 12, tzinfo=UTC)
    # 7 left at noon Friday: Friday's remaining 7 use it all up exactly at midnight, before the quiet weekend
    assert runs_out_at(weekly, spent=Decimal(93), limit=Decimal(100), now=friday_noon, until=end) == datetime(
        2025, 6, 14, tzinfo=UTC
    )
    # one more and it lasts over the weekend into Monday
    monday = runs_out_at(weekly, spent=Decimal(92), limit=Decimal(100), now=friday_noon, until=end)
    assert monday is not None and monday.date() == date(2025, 6, 16)
