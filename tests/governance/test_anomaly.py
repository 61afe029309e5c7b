"""Anomalies: the same hour over the previous 7 days, z-score and multiplier rules, guards, reported once."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from governance.anomaly import AnomalyRegistry, AnomalyRules, detect, detect_all
from governance.config import AnomalyConfig

START = datetime(2025, 6, 1, tzinfo=UTC)
SPIKE = datetime(2025, 6, 9, 14, tzinfo=UTC)
RULES = AnomalyRules(z_score=Decimal(3), multiplier=Decimal(3), min_volume=Decimal(1))


def daily_rhythm(
    hours: int = 9 * 24, spike_at: datetime | None = SPIKE, spike: Decimal = Decimal(40)
) -> list[tuple[datetime, Decimal]]:
    """Spend with a daily cycle (busy afternoons), a little day-to-day wobble, and one spike."""
    out = []
    for i in range(hours):
        at = START + timedelta(hours=i)
        base = 5 + 4 * math.sin((at.hour - 8) / 24 * 2 * math.pi)  # 1 .. 9 per hour
        value = Decimal(str(round(base * (1 + 0.05 * ((i // 24) % 3 - 1)), 4)))
        out.append((at, spike if at == spike_at else value))
    return out


def test_a_spike_against_the_same_hour_baseline_is_found_with_its_evidence() -> None:
    found = detect(daily_rhythm(), tenant="acme", metric="spend", rules=RULES, unit="USD")
    assert [a.hour for a in found] == [SPIKE]
    (a,) = found
    assert a.rules == ("z_score", "multiplier") and a.observed == 40 and len(a.baseline) == 7
    assert a.baseline_mean > 7 and a.baseline_std > 0 and a.z_score is not None and a.z_score > 3
    assert a.ratio is not None and a.ratio > 3
    assert a.key == ("acme", "spend", SPIKE)
    assert "tenant 'acme': spend in the hour from 2025-06-09T14:00:00Z was 40 USD" in a.message()


def test_the_daily_cycle_alone_is_not_an_anomaly() -> None:
    # the afternoon peak is ~9x the early-morning trough, but every hour matches its own baseline
    assert detect(daily_rhythm(spike_at=None), tenant="acme", metric="spend", rules=RULES) == []


def test_each_rule_fires_on_its_own() -> None:
    steady = [(SPIKE - timedelta(days=d), Decimal(10 + d % 2)) for d in range(1, 8)]
    z_only = detect([*steady, (SPIKE, Decimal(14))], tenant="t", metric="spend", rules=RULES, hours=[SPIKE])
    assert [a.rules for a in z_only] == [("z_score",)]  # +7 sigma but only 1.3x
    flat = [(SPIKE - timedelta(days=d), Decimal(10)) for d in range(1, 8)]
    mult = detect([*flat, (SPIKE, Decimal(35))], tenant="t", metric="spend", rules=RULES, hours=[SPIKE])
    assert [(a.rules, a.z_score, a.ratio) for a in mult] == [(("multiplier",), None, Decimal("3.5"))]
    zero = [(SPIKE - timedelta(days=d), Decimal(0)) for d in range(1, 8)]
    new = detect([*zero, (SPIKE, Decimal(5))], tenant="t", metric="spend", rules=RULES, hours=[SPIKE])
    assert [(a.rules, a.ratio) for a in new] == [(("multiplier",), None)]


def test_guards_minimum_volume_and_baseline_length() -> None:
    tiny = [(SPIKE - timedelta(days=d), Decimal("0.01")) for d in range(1, 8)] + [(SPIKE, Decimal("0.5"))]
    assert detect(tiny, tenant="t", metric="spend", rules=RULES) == []  # 50x, but under min_spend
    short = [(SPIKE - timedelta(days=d), Decimal(1)) for d in range(1, 3)] + [(SPIKE, Decimal(50))]
    assert detect(short, tenant="t", metric="spend", rules=RULES) == []  # 2 baseline days < 3
    # missing hours inside the known range count as zero
    gaps = [(SPIKE - timedelta(days=7), Decimal(1)), (SPIKE, Decimal(50))]
    (found,) = detect(gaps, tenant="t", metric="spend", rules=RULES)
    assert found.baseline == (*[Decimal(0)] * 6, Decimal(1))


def test_tokens_use_their_own_minimum_and_thresholds_come_from_config() -> None:
    config = AnomalyConfig(z_score=Decimal(2), multiplier=Decimal(2), min_tokens=5000, min_spend=Decimal(100))
    tokens = AnomalyRules.from_config(config, "tokens")
    assert (tokens.min_volume, tokens.z_score) == (Decimal(5000), Decimal(2))
    series = [(SPIKE - timedelta(days=d), 1000) for d in range(1, 8)]
    found = detect([*series, (SPIKE, 6000)], tenant="t", metric="tokens", rules=tokens)
    assert [a.metric for a in found] == ["tokens"] and "6000 tokens" in found[0].message()


def test_anomalies_are_reported_once() -> None:
    registry = AnomalyRegistry()
    series = {"acme": daily_rhythm(), "beta": daily_rhythm(spike_at=None)}
    first = registry.record(detect_all(series, metric="spend", rules=RULES))
    assert [(a.tenant, a.hour) for a in first] == [("acme", SPIKE)]
    assert registry.record(detect_all(series, metric="spend", rules=RULES)) == []  # the next scheduled run
    assert registry.recent() == first
    registry.forget_before(SPIKE + timedelta(hours=1))
    assert registry.recent() == []
    seeded = AnomalyRegistry(seen=[("acme", "spend", SPIKE)])  # known from storage at start
    assert seeded.record(first) == []
