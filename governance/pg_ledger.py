"""Budget spend and reservations in a Postgres database, shared by every replica that uses it.

With `storage.backend: ducklake` the gateway's replicas already share the Postgres catalog database
(`storage.catalog: "postgres:dbname=... host=..."`); the budget ledger lives there too, in two
tables the gateway creates:

    meterway_budget_spend         (budget, period_start) -> spent, fired soft thresholds
    meterway_budget_reservations  (request_key, budget)  -> period_start, amount, at

`reserve` is one transaction: for each applying budget (in name order, so two transactions never
wait on each other in a cycle) it makes sure the period's row exists, locks it (`SELECT ... FOR
UPDATE`), marks that budget's reservations older than the TTL expired (they hold nothing any more,
but their request is still charged if it settles within a day; older ones are deleted), checks
`spent + reserved + estimate <= limit` and inserts the reservation. A second replica reserving
against the same budget waits on the row lock until the first commits, so it sees the first one's
reservation: spend plus open reservations never passes a hard limit. `settle` deletes the
reservation and adds the real cost under the same lock; `release` deletes it. Nothing is kept in the
process, so budget state survives restarts of every replica.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from governance.budgets import (
    EXPIRED_KEPT,
    ZERO,
    BudgetStatus,
    Hold,
    PeriodSpend,
    Refusal,
    Reservation,
    ThresholdCrossing,
    budget_refusal,
    crossings_for,
)
from governance.config import BudgetConfig
from governance.money import FxFunction, Money, convert, plain
from governance.periods import period_bounds, utc
from governance.pg_pool import LEDGER_SCHEMA_LOCK, Cursor, PgPool
from governance.shared_ledger import LedgerUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS meterway_budget_spend (
    budget text NOT NULL,
    period_start timestamptz NOT NULL,
    spent numeric NOT NULL DEFAULT 0,
    fired text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (budget, period_start)
);
CREATE TABLE IF NOT EXISTS meterway_budget_reservations (
    request_key text NOT NULL,
    budget text NOT NULL,
    period_start timestamptz NOT NULL,
    amount numeric NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (request_key, budget)
);
ALTER TABLE meterway_budget_reservations ADD COLUMN IF NOT EXISTS expired boolean NOT NULL DEFAULT false;
"""


def conninfo(catalog: str) -> str:
    """The libpq connection string of a `postgres:...` catalog."""
    return catalog.removeprefix("ducklake:").removeprefix("postgres:").strip()


class PostgresLedger:
    """A `SharedLedger` in Postgres; a few connections, opened on first use."""

    def __init__(
        self,
        dsn: str,
        budgets: Callable[[], Sequence[BudgetConfig]],
        fx: FxFunction,
        *,
        connections: int = 4,
        reservation_ttl: timedelta = timedelta(minutes=15),
    ) -> None:
        self.dsn = dsn
        self._budgets = budgets
        self._fx = fx
        self._ttl = reservation_ttl
        self._pool = PgPool(dsn, SCHEMA, LEDGER_SCHEMA_LOCK, LedgerUnavailable, "budget database", connections)
        self._transaction = self._pool.transaction

    async def reserve(
        self, request_key: str, budgets: Sequence[BudgetConfig], estimate: Money | None, at: datetime
    ) -> Reservation | Refusal:
        when = utc(at)
        holds: list[Hold] = []
        async with self._transaction() as cur:
            for budget in sorted(budgets, key=lambda b: b.name):
                start, end = period_bounds(budget.period, when)
                await _lock_period(cur, budget.name, start)
                await cur.execute(
                    "WITH gone AS (DELETE FROM meterway_budget_reservations WHERE budget = %s AND at < %s) "
                    "UPDATE meterway_budget_reservations SET expired = true "
                    "WHERE budget = %s AND at >= %s AND at < %s AND NOT expired",
                    [budget.name, when - EXPIRED_KEPT, budget.name, when - EXPIRED_KEPT, when - self._ttl],
                )
                amount = ZERO if estimate is None else convert(estimate, budget.currency, when, self._fx)
                if amount is None and not budget.hard:
                    amount = ZERO
                if budget.hard:
                    used = await _used(cur, budget.name, start)
                    if amount is None:
                        source = estimate.currency if estimate is not None else "?"
                        return budget_refusal(budget, end, used, f"no FX rate from {source} to {budget.currency}")
                    if used >= budget.limit or used + amount > budget.limit:
                        why = None if amount == 0 else f"the request may cost up to {plain(amount)} {budget.currency}"
                        return budget_refusal(budget, end, used, why)
                assert amount is not None
                holds.append(Hold(budget.name, start, amount))
            for hold in holds:
                await cur.execute(
                    "INSERT INTO meterway_budget_reservations (request_key, budget, period_start, amount, at) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [request_key, hold.budget, hold.period_start, hold.amount, when],
                )
        return Reservation(request_key, when, estimate, tuple(holds))

    async def settle(self, reservation: Reservation, actual: Money | None) -> list[ThresholdCrossing]:
        known = {b.name: b for b in self._budgets()}
        crossings: list[ThresholdCrossing] = []
        async with self._transaction() as cur:
            for hold in sorted(reservation.holds, key=lambda h: h.budget):
                budget = known.get(hold.budget)
                spend = await _lock_period(cur, hold.budget, hold.period_start)
                await cur.execute(
                    "DELETE FROM meterway_budget_reservations WHERE request_key = %s AND budget = %s",
                    [reservation.request_key, hold.budget],
                )
                if cur.rowcount == 0 or budget is None:
                    continue  # settled already, released, expired over a day ago, or the budget is gone
                cost = ZERO if actual is None else convert(actual, budget.currency, reservation.at, self._fx)
                spend.spent += hold.amount if cost is None else cost
                crossings += crossings_for(budget, hold.period_start, spend)
                await cur.execute(
                    "UPDATE meterway_budget_spend SET spent = %s, fired = %s WHERE budget = %s AND period_start = %s",
                    [spend.spent, sorted(str(t) for t in spend.fired), hold.budget, hold.period_start],
                )
        return crossings

    async def release(self, reservation: Reservation) -> None:
        async with self._transaction() as cur:
            await cur.execute(
                "DELETE FROM meterway_budget_reservations WHERE request_key = %s", [reservation.request_key]
            )

    async def spent(self, budget: str, period_start: datetime) -> tuple[Decimal, Decimal]:
        """(spent, reserved) of one budget's period."""
        async with self._transaction() as cur:
            await cur.execute(
                "SELECT coalesce(sum(amount), 0) FROM meterway_budget_reservations WHERE budget = %s AND "
                "period_start = %s AND NOT expired",
                [budget, period_start],
            )
            row = await cur.fetchone()
            reserved = Decimal(str(row[0])) if row else ZERO
            await cur.execute(
                "SELECT spent FROM meterway_budget_spend WHERE budget = %s AND period_start = %s",
                [budget, period_start],
            )
            row = await cur.fetchone()
            return (Decimal(str(row[0])) if row else ZERO), reserved

    async def status(self, budgets: Sequence[BudgetConfig], at: datetime) -> list[BudgetStatus]:
        out = []
        for budget in budgets:
            start, resets = period_bounds(budget.period, at)
            spent, reserved = await self.spent(budget.name, start)
            out.append(BudgetStatus(budget, start, resets, spent, reserved))
        return out

    async def close(self) -> None:
        await self._pool.close()


async def _lock_period(cur: Cursor, budget: str, start: datetime) -> PeriodSpend:
    await cur.execute(
        "INSERT INTO meterway_budget_spend (budget, period_start) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        [budget, start],
    )
    await cur.execute(
        "SELECT spent, fired FROM meterway_budget_spend WHERE budget = %s AND period_start = %s FOR UPDATE",
        [budget, start],
    )
    row = await cur.fetchone()
    assert row is not None
    fired = row[1] if isinstance(row[1], list) else []
    return PeriodSpend(Decimal(str(row[0])), {Decimal(str(t)) for t in fired})


async def _used(cur: Cursor, budget: str, start: datetime) -> Decimal:
    await cur.execute(
        "SELECT s.spent + coalesce((SELECT sum(amount) FROM meterway_budget_reservations r "
        "WHERE r.budget = s.budget AND r.period_start = s.period_start AND NOT r.expired), 0) "
        "FROM meterway_budget_spend s WHERE s.budget = %s AND s.period_start = %s",
        [budget, start],
    )
    row = await cur.fetchone()
    return Decimal(str(row[0])) if row else ZERO
