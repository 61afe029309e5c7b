"""Month-end spend forecasts from a daily series, and when a budget runs out at the current rate.

Method: day-of-week seasonal factors times a robust linear trend (a classical multiplicative
decomposition), computed in Decimal.

1. The last `history_days` complete days (default 56, missing days count as zero) give the weekly
   pattern: each day's ratio to its centred 7-day moving average; a weekday's factor is the median of
   its ratios, and the seven factors are scaled to average 1. With under two weeks of data every
   factor is 1.
2. The last `trend_days` (default 28) days, divided by their weekday's factor, give the trend:
   a Theil–Sen line (median of pairwise slopes, median intercept), so one spike or one quiet holiday
   barely moves it, where a least-squares line would tilt.
3. The expected spend of a future day is `max(0, trend(day)) × factor(weekday)`. Month-end spend is
   what was spent so far this month, plus the rest of today at today's expected rate, plus every
   later day of the month.
4. The range is the forecast ± 1.645 standard deviations (about 90%). σ, the root mean square of the
   fit's daily residuals, gives independent daily noise (σ²·days left) plus the error of the trend's
   level and slope, which moves every remaining day together (least-squares formulas, used as an
   approximation for the Theil–Sen line), so the range widens with the horizon and with a short
   trend window. The low end never goes below what is already spent.

A straight line through raw daily spend (the usual baseline) puts weekday peaks and weekend dips
into its noise and predicts every day at the weekly average, so its month-end total is off by the
weekday mix of the days left; the seasonal factors remove that error.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from statistics import median

from governance.periods import utc

ZERO = Decimal(0)
ONE = Decimal(1)
Z_90 = Decimal("1.645")
DAY_SECONDS = Decimal(86_400)
DailyPoint = tuple[date, Decimal]


@dataclass(frozen=True, slots=True)
class SpendModel:
    """Expected daily spend: `max(0, intercept + slope × (day - origin)) × factor[weekday]`."""

    origin: date
    intercept: Decimal
    slope: Decimal  # per day, deseasonalised
    factors: tuple[Decimal, ...]  # Monday first, averaging 1
    sigma: Decimal  # RMS of the daily residuals of the fit
    days: int  # days of history behind it
    trend_center: Decimal = ZERO  # mean day index (from origin) of the trend window
    trend_points: int = 0
    trend_sxx: Decimal = ZERO  # sum of squared distances of the trend window's days from its center

    def expected(self, day: date) -> Decimal:
        level = self.intercept + self.slope * (day - self.origin).days
        return max(level, ZERO) * self.factors[day.weekday()]


@dataclass(frozen=True, slots=True)
class MonthForecast:
    month: date  # first day of the month
    as_of: datetime
    spent: Decimal  # so far this month
    expected: Decimal  # at month end
    low: Decimal
    high: Decimal
    model: SpendModel

    @property
    def method(self) -> str:
        return "day-of-week factors × Theil–Sen trend"


def _filled(daily: Iterable[DailyPoint], first: date, last: date) -> list[Decimal]:
    values: dict[date, Decimal] = {}
    for day, value in daily:
        values[day] = values.get(day, ZERO) + Decimal(value)
    return [values.get(first + timedelta(days=i), ZERO) for i in range((last - first).days + 1)]


def _weekday_factors(values: Sequence[Decimal], first: date) -> tuple[Decimal, ...]:
    if len(values) < 14:
        return (ONE,) * 7
    ratios: list[list[Decimal]] = [[] for _ in range(7)]
    for i in range(3, len(values) - 3):
        average = sum(values[i - 3 : i + 4], ZERO) / 7
        if average > 0:
            ratios[(first + timedelta(days=i)).weekday()].append(values[i] / average)
    raw = [median(r) if r else ONE for r in ratios]
    total = sum(raw, ZERO)
    return tuple(f * 7 / total for f in raw) if total > 0 else (ONE,) * 7


def _theil_sen(points: Sequence[tuple[int, Decimal]]) -> tuple[Decimal, Decimal]:
    if not points:
        return ZERO, ZERO
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1]
    slope = median(slopes) if slopes else ZERO
    intercept = median([y - slope * x for x, y in points])
    return intercept, slope


def fit(daily: Iterable[DailyPoint], last_day: date, *, history_days: int = 56, trend_days: int = 28) -> SpendModel:
    """The spend model of the days up to and including `last_day` (complete days only)."""
    points = [(d, v) for d, v in daily if d <= last_day]
    if not points:
        return SpendModel(last_day, ZERO, ZERO, (ONE,) * 7, ZERO, 0)
    first = max(min(d for d, _ in points), last_day - timedelta(days=history_days - 1))
    values = _filled(points, first, last_day)
    factors = _weekday_factors(values, first)
    start = max(0, len(values) - trend_days)
    deseasonalised = []
    for i in range(start, len(values)):
        factor = factors[(first + timedelta(days=i)).weekday()]
        if factor > 0:
            deseasonalised.append((i, values[i] / factor))
    intercept, slope = _theil_sen(deseasonalised)
    model = SpendModel(first, intercept, slope, factors, ZERO, len(values))
    residuals = [values[i] - model.expected(first + timedelta(days=i)) for i in range(start, len(values))]
    sigma = (sum((r * r for r in residuals), ZERO) / len(residuals)).sqrt()
    xs = [Decimal(x) for x, _ in deseasonalised]
    center = sum(xs, ZERO) / len(xs) if xs else ZERO
    sxx = sum(((x - center) ** 2 for x in xs), ZERO)
    return SpendModel(first, intercept, slope, factors, sigma, len(values), center, len(xs), sxx)


def _day_fraction_left(now: datetime) -> Decimal:
    midnight = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    elapsed = Decimal((now - midnight).total_seconds())
    return max(ZERO, (DAY_SECONDS - elapsed) / DAY_SECONDS)


def forecast_month_end(
    daily: Iterable[DailyPoint],
    now: datetime,
    *,
    today_so_far: Decimal = ZERO,
    history_days: int = 56,
    trend_days: int = 28,
) -> MonthForecast:
    """Month-end spend of the month holding `now`, from complete days before today plus today so far."""
    now = utc(now)
    today = now.date()
    points = [(d, Decimal(v)) for d, v in daily if d < today]
    model = fit(points, today - timedelta(days=1), history_days=history_days, trend_days=trend_days)
    month = today.replace(day=1)
    spent = sum((v for d, v in points if d >= month), ZERO) + today_so_far
    last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    # (day, share of it still to come): the rest of today, then every later day of the month
    ahead = [(today, _day_fraction_left(now))] + [
        (today + timedelta(days=i), ONE) for i in range(1, (last - today).days + 1)
    ]
    expected = spent + sum((share * model.expected(day) for day, share in ahead), ZERO)
    width = Z_90 * _spread(model, ahead)
    low = max(spent, expected - width)
    return MonthForecast(month, now, spent, expected, low, expected + width, model)


def _spread(model: SpendModel, days: Sequence[tuple[date, Decimal]]) -> Decimal:
    """Standard deviation of the summed forecast over `days` (each with the share of it still to come).

    Daily noise adds up independently; the error of the trend's level and slope moves every day
    together. Both use least-squares formulas, an approximation for the Theil–Sen line.
    """
    noise = model.sigma**2 * sum((w for _, w in days), ZERO)
    if model.trend_points == 0:
        return noise.sqrt()
    level = sum((w * model.factors[d.weekday()] for d, w in days), ZERO)
    tilt = sum((w * model.factors[d.weekday()] * ((d - model.origin).days - model.trend_center) for d, w in days), ZERO)
    trend = model.sigma**2 * (level**2 / model.trend_points + (tilt**2 / model.trend_sxx if model.trend_sxx else ZERO))
    return (noise + trend).sqrt()


def total_series(series: Iterable[Sequence[DailyPoint]]) -> list[DailyPoint]:
    """Several daily series added up day by day (the overall series from the per-tenant ones)."""
    totals: dict[date, Decimal] = {}
    for points in series:
        for day, value in points:
            totals[day] = totals.get(day, ZERO) + Decimal(value)
    return sorted(totals.items())


def forecast_tenants(
    series_by_tenant: Mapping[str, Sequence[DailyPoint]],
    now: datetime,
    *,
    today_so_far: Mapping[str, Decimal] | None = None,
) -> tuple[dict[str, MonthForecast], MonthForecast]:
    """A forecast per tenant and one for their total (fitted on the summed series, not summed forecasts)."""
    so_far = today_so_far or {}
    per_tenant = {
        tenant: forecast_month_end(points, now, today_so_far=so_far.get(tenant, ZERO))
        for tenant, points in series_by_tenant.items()
    }
    overall = forecast_month_end(total_series(series_by_tenant.values()), now, today_so_far=sum(so_far.values(), ZERO))
    return per_tenant, overall


def runs_out_at(
    model: SpendModel, *, spent: Decimal, limit: Decimal, now: datetime, until: datetime
) -> datetime | None:
    """When spend reaches `limit` if it goes on at the model's expected rate; None if not before `until`.

    `spent` and `limit` are in the currency of the series the model was fitted on.
    """
    cursor = utc(now)
    remaining = limit - spent
    if remaining <= 0:
        return cursor
    until = utc(until)
    while cursor < until:
        day_end = datetime.combine(cursor.date() + timedelta(days=1), time(), tzinfo=cursor.tzinfo)
        rate = model.expected(cursor.date())  # per day
        stop = min(day_end, until)
        spend = rate * Decimal((stop - cursor).total_seconds()) / DAY_SECONDS
        if spend >= remaining and rate > 0:
            return cursor + timedelta(seconds=float(remaining / rate * DAY_SECONDS))
        remaining -= spend
        cursor = stop
    return None
