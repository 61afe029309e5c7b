"""Rate limits: requests and tokens per minute, reservation then settlement, retry-after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from governance.config import RateLimitConfig
from governance.ratelimit import RateGrant, RateLimiter, RateRefusal
from governance.scope import RequestScope, Selector
from governance.shared_rates import RatesUnavailable, StoreRates, grant_from, grant_json

ACME = RequestScope(tenant="acme", key="key_a", model="gpt-4o")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(*rules: RateLimitConfig) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(rules, clock=clock), clock


def test_requests_per_minute_with_retry_after() -> None:
    rl, clock = limiter(RateLimitConfig("acme-rpm", Selector(tenant="acme"), rpm=60))
    for _ in range(60):
        assert isinstance(rl.acquire(ACME, 0), RateGrant)
    refused = rl.acquire(ACME, 0)
    assert isinstance(refused, RateRefusal)
    assert refused.kind == "rpm" and refused.retry_after == pytest.approx(1.0)
    assert refused.retry_after_header() == "1"
    assert refused.message == "rate limit 'acme-rpm' (tenant acme): 60 requests per minute; retry after 1 s"
    clock.now += 1.0
    assert isinstance(rl.acquire(ACME, 0), RateGrant)
    assert isinstance(rl.acquire(RequestScope(tenant="other"), 0), RateGrant)  # not covered by the rule


def test_tokens_are_reserved_then_settled() -> None:
    rl, clock = limiter(RateLimitConfig("tpm", Selector(tenant="acme"), tpm=6000))
    grant = rl.acquire(ACME, 5000)
    assert isinstance(grant, RateGrant)
    refused = rl.acquire(ACME, 2000)
    assert isinstance(refused, RateRefusal) and refused.kind == "tpm"
    assert refused.retry_after == pytest.approx(10.0)  # 1000 tokens short at 100 tokens/s
    rl.settle(grant, 1000)  # used far less than estimated: the rest comes back
    assert isinstance(rl.acquire(ACME, 2000), RateGrant)
    over = rl.acquire(ACME, 100)
    assert isinstance(over, RateGrant)
    rl.settle(over, 4000)  # used more than estimated: the excess is charged
    later = rl.acquire(ACME, 1000)
    assert isinstance(later, RateRefusal) and later.retry_after == pytest.approx(20.0)  # 1000 in debt, 1000 wanted
    clock.now += 20.0
    assert isinstance(rl.acquire(ACME, 1000), RateGrant)


def test_a_refused_request_takes_nothing_from_any_bucket() -> None:
    rules = (
        RateLimitConfig("rpm", Selector(tenant="acme"), rpm=100),
        RateLimitConfig("tpm", Selector(model="gpt-4o"), tpm=1000),
    )
    rl, _ = limiter(*rules)
    before = rl.acquire(ACME, 900)
    assert isinstance(before, RateGrant)
    levels = rl.levels()
    assert isinstance(rl.acquire(ACME, 500), RateRefusal)
    assert rl.levels() == levels
    rl.release(before)
    assert all(level == pytest.approx(cap) for level, cap in zip(rl.levels().values(), (100, 1000), strict=True))


def test_per_splits_a_rule_into_one_bucket_per_value() -> None:
    rl, _ = limiter(RateLimitConfig("per-key", rpm=1, per=("key",)))
    assert isinstance(rl.acquire(RequestScope(key="a"), 0), RateGrant)
    refused = rl.acquire(RequestScope(key="a"), 0)
    assert isinstance(refused, RateRefusal) and "per key a" in refused.message
    assert isinstance(rl.acquire(RequestScope(key="b"), 0), RateGrant)
    assert refused.retry_after == pytest.approx(60.0)


def test_an_oversized_request_passes_when_the_bucket_is_full_and_debt_is_capped() -> None:
    rl, clock = limiter(RateLimitConfig("tpm", tpm=600))
    grant = rl.acquire(ACME, 10_000)
    assert isinstance(grant, RateGrant)
    rl.settle(grant, 10_000)
    refused = rl.acquire(ACME, 600)
    assert isinstance(refused, RateRefusal) and refused.retry_after == pytest.approx(120.0)
    clock.now += 120
    assert isinstance(rl.acquire(ACME, 600), RateGrant)


def test_idle_buckets_are_pruned() -> None:
    rl, clock = limiter(RateLimitConfig("per-key", rpm=60, per=("key",)))
    for key in "abc":
        assert isinstance(rl.acquire(RequestScope(key=key), 0), RateGrant)
    assert rl.prune() == 0
    clock.now += 1
    assert rl.prune() == 3 and rl.levels() == {}


def test_a_grant_survives_the_trip_to_the_store_process_and_back() -> None:
    rule = RateLimitConfig("per-key", Selector(tenant="acme"), rpm=5, tpm=1000, per=("key", "feature"))
    rl, _ = limiter(rule)
    grant = rl.acquire(ACME, 300)
    assert isinstance(grant, RateGrant)
    assert grant.requests[0][2] == ("key_a", None)  # a per-value that is absent stays None
    assert grant_from(orjson.loads(orjson.dumps(grant_json(grant)))) == grant
    rl.release(grant_from(orjson.loads(orjson.dumps(grant_json(grant)))))
    assert set(rl.levels().values()) == {5.0, 1000.0}  # what the copy gave back is what the grant took


def test_a_store_process_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    rates = StoreRates(tmp_path / "nobody.sock")

    async def ask() -> None:
        try:
            with pytest.raises(RatesUnavailable, match="the store process does not answer"):
                await rates.acquire(ACME, 10)
        finally:
            await rates.close()

    asyncio.run(ask())
