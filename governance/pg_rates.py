"""Rate limits shared by DuckLake replicas, in the Postgres catalog database they already share.

Replicas on several machines have no store process in common, so each would count only its own
traffic and N replicas would let N times a limit through. With `storage.backend: ducklake` the
token buckets live in one table instead:

    meterway_rate_buckets  (bucket) -> level, updated (seconds, the database's clock)

Each call is one transaction that makes sure the buckets it needs exist (full), locks them in key
order (`SELECT ... FOR UPDATE`, so two replicas never wait on each other in a cycle), and runs the
same `RateLimiter` arithmetic on them as a single gateway does in memory, timed by the database's
clock so that replicas on machines whose clocks differ still refill the buckets alike. A replica
taking from a bucket waits on its row lock until the one before has committed, so the buckets are
exact across replicas. When the database does not answer, the request goes through without a rate
check (`RatesUnavailable`, as with the store process): a provider's own limits still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import orjson

from governance.config import RateLimitConfig
from governance.pg_pool import RATES_SCHEMA_LOCK, Cursor, PgPool
from governance.ratelimit import BucketKey, RateGrant, RateLimiter, RateRefusal
from governance.scope import RequestScope
from governance.shared_rates import RatesUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS meterway_rate_buckets (
    bucket text PRIMARY KEY,
    level double precision NOT NULL,
    updated double precision NOT NULL
);
"""


def bucket_name(key: BucketKey) -> str:
    """A bucket's row key: its rule, kind and `per` values as JSON."""
    name, kind, per = key
    return orjson.dumps([name, kind, list(per)]).decode()


class PostgresRates:
    """A `SharedRates` in Postgres; a few connections, opened on first use."""

    def __init__(self, dsn: str, rules: Callable[[], Sequence[RateLimitConfig]], *, connections: int = 4) -> None:
        self._rules = rules
        self._pool = PgPool(dsn, SCHEMA, RATES_SCHEMA_LOCK, RatesUnavailable, "rate limit database", connections)

    async def acquire(self, scope: RequestScope, estimated_tokens: int) -> RateGrant | RateRefusal:
        async with self._pool.transaction() as cur:
            now = await _now(cur)
            limiter = RateLimiter(self._rules(), clock=lambda: now)
            wanted = limiter.applicable(scope, estimated_tokens)
            if not wanted:
                return RateGrant((), ())
            full = {bucket_name(key): float(per_minute) for key, per_minute, _, _ in wanted}
            names = sorted(full)
            await cur.execute(
                "INSERT INTO meterway_rate_buckets (bucket, level, updated) "
                "SELECT b, l, %s FROM unnest(%s::text[], %s::float8[]) AS t(b, l) ORDER BY b ON CONFLICT DO NOTHING",
                [now, names, [full[n] for n in names]],
            )
            limiter.restore(await _locked(cur, (key for key, _, _, _ in wanted)))
            result = limiter.acquire(scope, estimated_tokens)
            if isinstance(result, RateGrant):
                await _write(cur, limiter)
            return result

    async def settle(self, grant: RateGrant, actual_tokens: int) -> None:
        await self._update([key for key, _ in grant.tokens], lambda limiter: limiter.settle(grant, actual_tokens))

    async def release(self, grant: RateGrant) -> None:
        keys = [*grant.requests, *(key for key, _ in grant.tokens)]
        await self._update(keys, lambda limiter: limiter.release(grant))

    async def _update(self, keys: list[BucketKey], change: Callable[[RateLimiter], None]) -> None:
        if not keys:
            return
        async with self._pool.transaction() as cur:
            now = await _now(cur)
            limiter = RateLimiter(self._rules(), clock=lambda: now)
            limiter.restore(await _locked(cur, keys))
            change(limiter)
            await _write(cur, limiter)

    async def close(self) -> None:
        await self._pool.close()


async def _now(cur: Cursor) -> float:
    await cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
    row = await cur.fetchone()
    assert row is not None
    return float(row[0])  # type: ignore[arg-type]


async def _locked(cur: Cursor, keys: Iterable[BucketKey]) -> dict[BucketKey, tuple[float, float]]:
    """The buckets' stored (level, updated), locked until the transaction ends, in key order."""
    by_name = {bucket_name(key): key for key in keys}
    await cur.execute(
        "SELECT bucket, level, updated FROM meterway_rate_buckets WHERE bucket = ANY(%s) ORDER BY bucket FOR UPDATE",
        [sorted(by_name)],
    )
    return {by_name[str(name)]: (float(level), float(updated)) for name, level, updated in await cur.fetchall()}  # type: ignore[arg-type]


async def _write(cur: Cursor, limiter: RateLimiter) -> None:
    state = limiter.snapshot()
    names = [bucket_name(key) for key in state]
    await cur.execute(
        "UPDATE meterway_rate_buckets SET level = t.level, updated = t.updated "
        "FROM unnest(%s::text[], %s::float8[], %s::float8[]) AS t(bucket, level, updated) "
        "WHERE meterway_rate_buckets.bucket = t.bucket",
        [names, [level for level, _ in state.values()], [updated for _, updated in state.values()]],
    )
