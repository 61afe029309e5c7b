"""The budget ledger in Postgres: replicas reserving together never overshoot, and spend survives restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from governance.budgets import Refusal, Reservation
from governance.config import BudgetConfig
from governance.money import Money
from governance.pg_ledger import PostgresLedger, conninfo
from tests.storage.postgres import Postgres, postgres_server

COST = Money(Decimal("0.01"), "USD")
LIMIT = COST.amount * 10


def budget(limit: Decimal = LIMIT) -> BudgetConfig:
    fields: dict[str, object] = {"name": "acme-daily", "limit": limit, "currency": "USD", "period": "day",
                                 "hard": True, "soft": (Decimal("0.5"),)}  # fmt: skip
    return BudgetConfig(**fields)  # type: ignore[arg-type]


def same_currency(src: str, dst: str, at: datetime) -> Decimal | None:
    return Decimal(1) if src == dst else None


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def ledger(dsn: str, b: BudgetConfig) -> PostgresLedger:
    return PostgresLedger(dsn, lambda: [b], same_currency, connections=4)


def test_replicas_reserving_together_never_overshoot_and_spend_survives_a_restart(pg: Postgres) -> None:
    dsn = conninfo(pg.create_database("budgets_race"))
    b = budget()

    async def run() -> None:
        replicas = [ledger(dsn, b), ledger(dsn, b)]  # two replicas: separate connections to one database
        now = datetime.now(UTC)
        held = await asyncio.gather(*(replicas[i % 2].reserve(f"r{i}", [b], COST, now) for i in range(64)))
        granted = [h for h in held if isinstance(h, Reservation)]
        refused = [h for h in held if isinstance(h, Refusal)]
        assert len(granted) == 10 and len(refused) == 54
        assert "acme-daily" in refused[0].message and "resets at" in refused[0].message
        crossings = []
        for i, reservation in enumerate(granted):
            crossings += await replicas[i % 2].settle(reservation, Money(Decimal("0.009"), "USD"))
        assert [c.threshold for c in crossings] == [Decimal("0.5")]  # fired once, across replicas
        for replica in replicas:
            await replica.close()

        restarted = ledger(dsn, b)  # a new process: nothing of the old ones in memory
        start = granted[0].holds[0].period_start
        assert await restarted.spent("acme-daily", start) == (Decimal("0.090"), Decimal(0))
        second = await restarted.reserve("after-restart", [b], COST, now)
        assert isinstance(second, Reservation)  # 0.09 spent + 0.01 fits 0.10 exactly
        third = await restarted.reserve("one-too-many", [b], COST, now)
        assert isinstance(third, Refusal)
        await restarted.release(second)
        assert await restarted.spent("acme-daily", start) == (Decimal("0.090"), Decimal(0))
        await restarted.close()

    asyncio.run(run())


def test_a_request_that_outlives_its_reservation_is_still_charged(pg: Postgres) -> None:
    """Another reservation marks the 16-minute-old one expired: it holds nothing, but its request is charged
    when it settles, once."""
    dsn = conninfo(pg.create_database("budgets_ttl"))
    b = budget()

    async def run() -> None:
        replica = PostgresLedger(dsn, lambda: [b], same_currency, connections=2, reservation_ttl=timedelta(minutes=15))
        now = datetime.now(UTC)
        long = await replica.reserve("long", [b], COST, now - timedelta(minutes=16))
        other = await replica.reserve("other", [b], COST, now)
        assert isinstance(long, Reservation) and isinstance(other, Reservation)
        start = long.holds[0].period_start
        still_held = COST.amount if other.holds[0].period_start == start else Decimal(0)
        assert await replica.spent(b.name, start) == (Decimal(0), still_held), "the expired hold counts no more"
        for _ in range(2):
            await replica.settle(long, Money(Decimal("0.004"), "USD"))
            assert await replica.spent(b.name, start) == (Decimal("0.004"), still_held)
        await replica.close()

    asyncio.run(run())
