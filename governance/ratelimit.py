"""Requests-per-minute and tokens-per-minute limits, as token buckets (GCRA's continuous form).

Each limit is a bucket holding up to one minute's allowance that refills continuously at
`limit / 60` per second. A rule's `per` fields (e.g. `per: [key]`) give every distinct value its own
bucket; without `per` everything the rule's filter matches shares one.

`RateLimiter.acquire(scope, estimated_tokens)` checks every bucket that applies and, only if all
have room, takes one request and the estimated tokens from each, in one synchronous step. A request
estimated at more than a whole minute's tokens is let through when the bucket is full, so it is
never refused forever. After the response, `settle(grant, actual_tokens)` returns the unused part of
the estimate or charges the excess; the debt a bucket can run into is capped at one minute's
allowance, so one oversized request delays what follows by at most two minutes. A refusal says
after how many seconds the request would fit (`retry_after`, and `retry_after_header()`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from governance.config import RateLimitConfig
from governance.scope import RequestScope

BucketKey = tuple[str, str, tuple[str | None, ...]]  # (rule name, "rpm" | "tpm", per values)


@dataclass(slots=True)
class Bucket:
    capacity: float
    rate: float  # units per second
    level: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits (0 if it fits now); called right after `refill`."""
        needed = min(amount, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate


@dataclass(frozen=True, slots=True)
class RateGrant:
    requests: tuple[BucketKey, ...]
    tokens: tuple[tuple[BucketKey, float], ...]  # (bucket, tokens taken)


@dataclass(frozen=True, slots=True)
class RateRefusal:
    limit: str
    kind: str  # "rpm" | "tpm"
    retry_after: float
    message: str

    def retry_after_header(self) -> str:
        """Whole seconds for the `retry-after` header, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class RateLimiter:
    def __init__(
        self,
        rules: Sequence[RateLimitConfig],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        self._rules = tuple(rules)
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[BucketKey, Bucket] = {}

    def configure(self, rules: Sequence[RateLimitConfig]) -> None:
        """Swap in new rules (a config reload); buckets start full again."""
        self._rules = tuple(rules)
        self._buckets.clear()

    def acquire(self, scope: RequestScope, estimated_tokens: int) -> RateGrant | RateRefusal:
        """Take one request and `estimated_tokens` from every bucket that applies, or refuse and take nothing."""
        now = self._clock()
        wanted = [self._wanted(*applies, now) for applies in self.applicable(scope, estimated_tokens)]
        worst: tuple[float, BucketKey, RateLimitConfig] | None = None
        for key, bucket, amount, rule in wanted:
            wait = bucket.wait_for(amount)
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, key, rule)
        if worst is not None:
            return self._refusal(*worst)
        requests: list[BucketKey] = []
        tokens: list[tuple[BucketKey, float]] = []
        for key, bucket, amount, _ in wanted:
            taken = min(amount, bucket.capacity)
            bucket.level -= taken
            if key[1] == "rpm":
                requests.append(key)
            else:
                tokens.append((key, taken))
        if len(self._buckets) > self._max_buckets:
            self.prune()
        return RateGrant(tuple(requests), tuple(tokens))

    def applicable(
        self, scope: RequestScope, estimated_tokens: int
    ) -> list[tuple[BucketKey, int, float, RateLimitConfig]]:
        """(bucket, limit per minute, amount to take, rule) for every limit that applies to the scope."""
        out: list[tuple[BucketKey, int, float, RateLimitConfig]] = []
        for rule in self._rules:
            if not rule.selector.matches(scope):
                continue
            per = tuple(scope.value(name) for name in rule.per)
            if rule.rpm:
                out.append(((rule.name, "rpm", per), rule.rpm, 1.0, rule))
            if rule.tpm:
                out.append(((rule.name, "tpm", per), rule.tpm, float(max(estimated_tokens, 0)), rule))
        return out

    def restore(self, states: Mapping[BucketKey, tuple[float, float]]) -> None:
        """Take buckets' (level, updated) as kept outside this process; a bucket whose rule is gone is skipped."""
        limits = {(r.name, kind): n for r in self._rules for kind, n in (("rpm", r.rpm), ("tpm", r.tpm)) if n}
        for key, (level, updated) in states.items():
            per_minute = limits.get((key[0], key[1]))
            if per_minute:
                self._buckets[key] = Bucket(float(per_minute), per_minute / 60.0, level, updated)

    def snapshot(self) -> dict[BucketKey, tuple[float, float]]:
        """Every live bucket's (level, updated), as `restore` takes them."""
        return {key: (bucket.level, bucket.updated) for key, bucket in self._buckets.items()}

    def settle(self, grant: RateGrant, actual_tokens: int) -> None:
        """Correct the token buckets from the estimate to the tokens the request really used."""
        now = self._clock()
        for key, taken in grant.tokens:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.refill(now)
                bucket.level = max(-bucket.capacity, min(bucket.capacity, bucket.level + taken - actual_tokens))

    def release(self, grant: RateGrant) -> None:
        """Give back everything a grant took (the request never reached the provider)."""
        now = self._clock()
        for key, taken in (*((k, 1.0) for k in grant.requests), *grant.tokens):
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.refill(now)
                bucket.level = min(bucket.capacity, bucket.level + taken)

    def prune(self) -> int:
        """Forget buckets that are full again (they behave like new ones); returns how many."""
        now = self._clock()
        full = []
        for key, bucket in self._buckets.items():
            bucket.refill(now)
            if bucket.level >= bucket.capacity:
                full.append(key)
        for key in full:
            del self._buckets[key]
        return len(full)

    def levels(self) -> dict[BucketKey, float]:
        """What is left in each live bucket (for /admin and tests)."""
        now = self._clock()
        for bucket in self._buckets.values():
            bucket.refill(now)
        return {key: bucket.level for key, bucket in self._buckets.items()}

    def _wanted(
        self, key: BucketKey, per_minute: int, amount: float, rule: RateLimitConfig, now: float
    ) -> tuple[BucketKey, Bucket, float, RateLimitConfig]:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(float(per_minute), per_minute / 60.0, float(per_minute), now)
        else:
            bucket.refill(now)
        return key, bucket, amount, rule

    def _refusal(self, wait: float, key: BucketKey, rule: RateLimitConfig) -> RateRefusal:
        name, kind, per = key
        limit = rule.rpm if kind == "rpm" else rule.tpm
        unit = "requests" if kind == "rpm" else "tokens"
        who = rule.selector.describe()
        if rule.per:
            who += " per " + ", ".join(f"{f} {v}" for f, v in zip(rule.per, per, strict=True))
        message = f"rate limit {name!r} ({who}): {limit} {unit} per minute; retry after {math.ceil(wait)} s"
        return RateRefusal(name, kind, wait, message)
