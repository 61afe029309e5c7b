"""Rate limits in Postgres: replicas taking from one bucket together never pass the limit, and settle and
release give back what they should."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from governance.config import RateLimitConfig
from governance.pg_ledger import conninfo
from governance.pg_rates import SCHEMA, PostgresRates
from governance.ratelimit import RateGrant, RateRefusal
from governance.scope import RequestScope, Selector
from governance.shared_rates import RatesUnavailable
from tests.storage.postgres import Postgres, postgres_server
from tests.support.process import free_port

ACME = RequestScope(tenant="acme", key="key_a", model="gpt-4o")
GLOBEX = RequestScope(tenant="globex", model="gpt-4o")


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def test_two_replicas_taking_at_once_admit_the_limit_once(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("rates_race"))
    rules = [RateLimitConfig("per-tenant", Selector(), rpm=10, per=("tenant",))]

    async def run() -> tuple[list[RateGrant | RateRefusal], float, RateGrant | RateRefusal]:
        a, b = PostgresRates(dsn, lambda: rules), PostgresRates(dsn, lambda: rules)
        try:
            began = time.monotonic()
            results = await asyncio.gather(*(replica.acquire(ACME, 0) for _ in range(15) for replica in (a, b)))
            elapsed = time.monotonic() - began
            return list(results), elapsed, await b.acquire(GLOBEX, 0)  # another tenant, its own bucket
        finally:
            await a.close()
            await b.close()

    results, elapsed, other = asyncio.run(run())
    granted = [r for r in results if isinstance(r, RateGrant)]
    refused = [r for r in results if isinstance(r, RateRefusal)]
    assert 10 <= len(granted) <= 10 + int(elapsed / 6)  # 10 per minute: one more every 6 s
    assert len(granted) + len(refused) == 30
    assert refused[0].limit == "per-tenant" and refused[0].kind == "rpm" and 0 < refused[0].retry_after <= 6
    assert "per tenant acme" in refused[0].message
    assert isinstance(other, RateGrant)
    with psycopg.connect(dsn) as con:
        buckets = con.execute("SELECT bucket FROM meterway_rate_buckets ORDER BY bucket").fetchall()
    assert buckets == [('["per-tenant","rpm",["acme"]]',), ('["per-tenant","rpm",["globex"]]',)]


def test_settle_charges_the_real_tokens_and_release_gives_everything_back(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("rates_settle"))
    rules = [RateLimitConfig("acme", Selector(tenant="acme"), rpm=2, tpm=1000)]

    async def run() -> None:
        a, b = PostgresRates(dsn, lambda: rules), PostgresRates(dsn, lambda: rules)
        try:
            first = await a.acquire(ACME, 100)
            assert isinstance(first, RateGrant)
            await a.settle(first, 300)  # 200 more than estimated: 700 tokens left
            refused = await b.acquire(ACME, 750)
            assert isinstance(refused, RateRefusal) and refused.kind == "tpm"
            second = await b.acquire(ACME, 600)
            assert isinstance(second, RateGrant)
            third = await a.acquire(ACME, 0)
            assert isinstance(third, RateRefusal) and third.kind == "rpm"  # two requests a minute
            await b.release(second)  # it never reached the provider: its request and tokens come back
            again = await a.acquire(ACME, 650)
            assert isinstance(again, RateGrant)
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_a_database_that_fails_is_unavailable_not_a_crash(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("rates_failing"))
    rules = [RateLimitConfig("acme", Selector(tenant="acme"), rpm=2)]
    with psycopg.connect(dsn, autocommit=True) as con:  # the table exists, and refuses every new bucket
        con.execute(SCHEMA)
        con.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON meterway_rate_buckets FOR EACH ROW EXECUTE FUNCTION refuse()"
        )

    async def run() -> None:
        rates = PostgresRates(dsn, lambda: rules)
        try:
            with pytest.raises(RatesUnavailable, match="rate limit database failed: disk full"):
                await rates.acquire(ACME, 0)  # the gateway lets the request through and logs it
            unreachable = PostgresRates(f"host=127.0.0.1 port={free_port()} dbname=gone", lambda: rules)
            with pytest.raises(RatesUnavailable, match="rate limit database does not answer"):
                await unreachable.acquire(ACME, 0)
        finally:
            await rates.close()

    asyncio.run(run())
