"""Hourly spend and token anomalies per tenant: seed 000's v1 rule.

An hour is compared with the same hour of day on each of the previous `baseline_days` days (seven by
default), so a tenant's normal daily rhythm is its own baseline. Two rules, either of which fires:

- z-score: `(observed - mean) / std >= z_score`, with the sample standard deviation of the baseline
  (a perfectly flat baseline has no z-score; the multiplier rule covers it);
- multiplier: `observed >= multiplier × mean`, and any volume at all over a baseline of zero.

Guards: the observed value must reach the minimum volume (`min_spend` for spend, `min_tokens` for
tokens), so a jump from 2 cents to 9 is not an alert; and at least `min_baseline_days` baseline days
must lie inside the data (a tenant seen for the first time yesterday has no baseline yet). Hours
with no point inside the known range count as zero.

Input is a plain series of `(hour_start, value)` pairs, so this does not depend on where the rollups
live. Output is `Anomaly` records with their evidence. `AnomalyRegistry` remembers which
(tenant, metric, hour) were reported, so each anomaly is stored and notified once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from governance.config import AnomalyConfig
from governance.money import plain
from governance.periods import iso_z, utc

METRICS = ("spend", "tokens")
Point = tuple[datetime, Decimal | int]
AnomalyKey = tuple[str, str, datetime]
ZERO = Decimal(0)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class AnomalyRules:
    z_score: Decimal = Decimal(3)
    multiplier: Decimal = Decimal(3)
    min_volume: Decimal = ZERO
    baseline_days: int = 7
    min_baseline_days: int = 3

    @classmethod
    def from_config(cls, config: AnomalyConfig, metric: str) -> AnomalyRules:
        volume = config.min_spend if metric == "spend" else Decimal(config.min_tokens)
        return cls(config.z_score, config.multiplier, volume, config.baseline_days, config.min_baseline_days)


@dataclass(frozen=True, slots=True)
class Anomaly:
    tenant: str
    metric: str  # "spend" | "tokens"
    hour: datetime
    observed: Decimal
    baseline_mean: Decimal
    baseline_std: Decimal
    baseline: tuple[Decimal, ...]  # the same hour on the previous days, most recent first
    z_score: Decimal | None
    ratio: Decimal | None  # observed / mean; None over a zero baseline
    rules: tuple[str, ...]  # "z_score", "multiplier"
    unit: str = ""  # the spend currency; empty for tokens

    @property
    def key(self) -> AnomalyKey:
        return (self.tenant, self.metric, self.hour)

    def message(self) -> str:
        unit = f" {self.unit}" if self.unit else " tokens"
        why = []
        if self.z_score is not None:
            why.append(f"z-score {self.z_score:.1f}")
        why.append(f"{self.ratio:.1f}× the mean" if self.ratio is not None else "over a baseline of zero")
        return (
            f"tenant {self.tenant!r}: {self.metric} in the hour from {iso_z(self.hour)} was "
            f"{plain(self.observed)}{unit} against a {len(self.baseline)}-day mean of "
            f"{plain(round(self.baseline_mean, 6))}{unit} ({', '.join(why)}; rules fired: {', '.join(self.rules)})"
        )


def hour_start(at: datetime) -> datetime:
    return utc(at).replace(minute=0, second=0, microsecond=0)


def _hourly(series: Iterable[Point]) -> dict[datetime, Decimal]:
    out: dict[datetime, Decimal] = {}
    for at, value in series:
        hour = hour_start(at)
        out[hour] = out.get(hour, ZERO) + Decimal(value)
    return out


def _mean_std(values: Sequence[Decimal]) -> tuple[Decimal, Decimal]:
    n = len(values)
    mean = sum(values, ZERO) / n
    if n < 2:
        return mean, ZERO
    variance = sum(((v - mean) ** 2 for v in values), ZERO) / (n - 1)
    return mean, variance.sqrt()


def judge_hour(
    values: Mapping[datetime, Decimal],
    hour: datetime,
    known_from: datetime,
    rules: AnomalyRules,
    *,
    tenant: str,
    metric: str,
    unit: str = "",
) -> Anomaly | None:
    """The anomaly at `hour` of an hourly series, or None when no rule fires or it cannot be judged."""
    observed = values.get(hour, ZERO)
    if observed <= 0 or observed < rules.min_volume:
        return None
    days = [hour - d * DAY for d in range(1, rules.baseline_days + 1)]
    baseline = tuple(values.get(day, ZERO) for day in days if day >= known_from)
    if len(baseline) < rules.min_baseline_days:
        return None
    mean, std = _mean_std(baseline)
    z = (observed - mean) / std if std > 0 else None
    ratio = observed / mean if mean > 0 else None
    fired = []
    if z is not None and z >= rules.z_score:
        fired.append("z_score")
    if ratio is None or ratio >= rules.multiplier:
        fired.append("multiplier")
    if not fired:
        return None
    return Anomaly(tenant, metric, hour, observed, mean, std, baseline, z, ratio, tuple(fired), unit)


def detect(
    series: Iterable[Point],
    *,
    tenant: str,
    metric: str,
    rules: AnomalyRules,
    hours: Iterable[datetime] | None = None,
    known_from: datetime | None = None,
    unit: str = "",
) -> list[Anomaly]:
    """Anomalies among `hours` (default: every hour in the series) of one tenant's hourly series.

    `known_from` is where the data starts (default: the series' first hour); baseline days before it
    do not count, rather than counting as zero.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    values = _hourly(series)
    if not values:
        return []
    start = hour_start(known_from) if known_from is not None else min(values)
    targets = sorted(values) if hours is None else sorted({hour_start(h) for h in hours})
    found = (judge_hour(values, h, start, rules, tenant=tenant, metric=metric, unit=unit) for h in targets)
    return [anomaly for anomaly in found if anomaly is not None]


def detect_all(
    series_by_tenant: Mapping[str, Sequence[Point]],
    *,
    metric: str,
    rules: AnomalyRules,
    hours: Iterable[datetime] | None = None,
    known_from: datetime | None = None,
    unit: str = "",
) -> list[Anomaly]:
    """`detect` for every tenant, ordered by hour then tenant."""
    wanted = None if hours is None else list(hours)
    found = [
        anomaly
        for tenant, series in series_by_tenant.items()
        for anomaly in detect(
            series, tenant=tenant, metric=metric, rules=rules, hours=wanted, known_from=known_from, unit=unit
        )
    ]
    return sorted(found, key=lambda a: (a.hour, a.tenant, a.metric))


class AnomalyRegistry:
    """The anomalies reported so far; `record` passes on only the ones not seen before."""

    def __init__(self, seen: Iterable[AnomalyKey] = ()) -> None:
        """`seen`: keys already reported (e.g. read back from storage at start)."""
        self._reported: dict[AnomalyKey, Anomaly | None] = dict.fromkeys(seen)

    def record(self, anomalies: Iterable[Anomaly]) -> list[Anomaly]:
        fresh = []
        for anomaly in anomalies:
            if anomaly.key not in self._reported:
                self._reported[anomaly.key] = anomaly
                fresh.append(anomaly)
        return fresh

    def recent(self) -> list[Anomaly]:
        """Anomalies recorded in this process, newest hour first."""
        found = [a for a in self._reported.values() if a is not None]
        return sorted(found, key=lambda a: (a.hour, a.tenant, a.metric), reverse=True)

    def forget_before(self, cutoff: datetime) -> None:
        """Drop anomalies of hours before `cutoff` (older than any hour a schedule re-evaluates)."""
        self._reported = {k: v for k, v in self._reported.items() if k[2] >= cutoff}
