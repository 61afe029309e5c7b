"""Budgets that concurrent requests cannot walk through: reserve the worst case first, settle the real cost after.

Before a request is sent, `BudgetLedger.reserve(request_key, budgets, estimate)` checks, for every hard
budget that applies, that `spent + reserved + estimate <= limit` in the budget's own currency, and
records the reservation against every applying budget. The check and the record are one synchronous
step with no await in between, so on one event loop no two requests can take the same headroom:
spend plus open reservations never passes a hard limit. When the request ends,
`settle(reservation, actual)` swaps the reservation for the real cost, which the worst-case estimate
bounds; only a request whose cost could not be estimated beforehand (reserved as zero) or that
produced more than it was estimated for can push spend over the limit, by its own cost. `release`
drops a reservation for a request that never reached the provider.

Spend is kept per budget and period (UTC day, ISO week or month, see `periods`). Soft thresholds
(fractions of the limit) crossed by settled spend come back from `settle`/`charge` as
`ThresholdCrossing` events, once per budget, period and threshold, for the caller to notify.

State (period spend, fired thresholds, open reservations) is a `LedgerState` that a `BudgetStore`
loads at start and saves from `snapshot()` (see `budget_store`). This ledger is one process's
authority: the single gateway process's, or the store process's under `serve --workers N`, which the
workers ask over its socket. Replicas on several machines use `governance.pg_ledger`, which does the
same check-and-reserve in one transaction in the Postgres catalog database (see `shared_ledger`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from governance.config import BudgetConfig
from governance.money import FxFunction, Money, convert, plain
from governance.periods import iso_z, period_bounds, period_end, utc
from governance.scope import RequestScope

ZERO = Decimal(0)
EXPIRED_KEPT = timedelta(days=1)  # how long a request whose reservation expired may still settle
SpendKey = tuple[str, datetime]  # (budget name, period start)


@dataclass(frozen=True, slots=True)
class Hold:
    """The part of a reservation held against one budget's period, in the budget's currency."""

    budget: str
    period_start: datetime
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Reservation:
    request_key: str
    at: datetime
    estimate: Money | None
    holds: tuple[Hold, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused: `message` names the budget and when it resets."""

    budget: str
    message: str
    resets_at: datetime
    limit: Decimal
    used: Decimal  # spent + reserved
    currency: str


@dataclass(frozen=True, slots=True)
class ThresholdCrossing:
    budget: str
    scope: str
    threshold: Decimal
    spent: Decimal
    limit: Decimal
    currency: str
    period_start: datetime
    resets_at: datetime

    def message(self) -> str:
        pct = plain(self.threshold * 100)
        return (
            f"budget {self.budget!r} ({self.scope}) passed {pct}%: {plain(self.spent)} of {plain(self.limit)} "
            f"{self.currency} spent this period; resets at {iso_z(self.resets_at)}"
        )


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: BudgetConfig
    period_start: datetime
    resets_at: datetime
    spent: Decimal
    reserved: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(self.budget.limit - self.spent - self.reserved, ZERO)


@dataclass(slots=True)
class PeriodSpend:
    spent: Decimal = ZERO
    fired: set[Decimal] = field(default_factory=set)


@dataclass(slots=True)
class LedgerState:
    """Everything a ledger needs to survive a restart."""

    spend: dict[SpendKey, PeriodSpend] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    saved_at: datetime | None = None  # when the snapshot was taken: what settled later is not in it


def matching_budgets(budgets: Iterable[BudgetConfig], scope: RequestScope) -> list[BudgetConfig]:
    return [b for b in budgets if b.selector.matches(scope)]


def _now() -> datetime:
    return datetime.now(UTC)


class BudgetLedger:
    """Period spend and open reservations of every budget; all mutations are synchronous."""

    def __init__(
        self,
        budgets: Sequence[BudgetConfig],
        fx: FxFunction,
        *,
        state: LedgerState | None = None,
        clock: Callable[[], datetime] = _now,
        reservation_ttl: timedelta = timedelta(minutes=15),
    ) -> None:
        """`state` comes from a `BudgetStore`; reservations older than `reservation_ttl` in it are dropped."""
        self._budgets = {b.name: b for b in budgets}
        self._fx = fx
        self._clock = clock
        self._ttl = reservation_ttl
        self._spend: dict[SpendKey, PeriodSpend] = {}
        self._reservations: dict[str, Reservation] = {}
        self._expired: dict[str, Reservation] = {}  # past the TTL but still running: charged when they settle
        self._reserved: dict[SpendKey, Decimal] = {}
        self.changes = 0  # bumped by every mutation, so a saver can tell whether there is anything to save
        self.restored_at = state.saved_at if state is not None else None  # see governance.budget_catch_up
        if state is not None:
            self._restore(state)

    @property
    def budgets(self) -> tuple[BudgetConfig, ...]:
        return tuple(self._budgets.values())

    def configure(self, budgets: Sequence[BudgetConfig]) -> None:
        """Swap in a new budget list (a config reload); spend is kept for budgets whose name stays."""
        self._budgets = {b.name: b for b in budgets}
        self.changes += 1

    def matching(self, scope: RequestScope) -> list[BudgetConfig]:
        return matching_budgets(self._budgets.values(), scope)

    def reserve(
        self, request_key: str, budgets: Sequence[BudgetConfig], estimate: Money | None, at: datetime | None = None
    ) -> Reservation | Refusal:
        """Hold `estimate` against every budget in `budgets`, or refuse if a hard one has no room for it."""
        if request_key in self._reservations:
            raise ValueError(f"request {request_key!r} already holds a reservation")
        when = utc(at) if at is not None else self._clock()
        holds: list[Hold] = []
        for budget in budgets:
            start, end = period_bounds(budget.period, when)
            amount = ZERO if estimate is None else convert(estimate, budget.currency, when, self._fx)
            if amount is None:
                if budget.hard:
                    source = estimate.currency if estimate is not None else "?"
                    fx_why = f"no FX rate from {source} to {budget.currency}"
                    return self._refusal(budget, end, self._used((budget.name, start)), fx_why)
                amount = ZERO
            if budget.hard:
                used = self._used((budget.name, start))
                if used >= budget.limit or used + amount > budget.limit:
                    why = None if amount == 0 else f"the request may cost up to {plain(amount)} {budget.currency}"
                    return self._refusal(budget, end, used, why)
            holds.append(Hold(budget.name, start, amount))
        for hold in holds:
            key = (hold.budget, hold.period_start)
            self._reserved[key] = self._reserved.get(key, ZERO) + hold.amount
        reservation = Reservation(request_key, when, estimate, tuple(holds))
        self._reservations[request_key] = reservation
        self.changes += 1
        return reservation

    def settle(self, reservation: Reservation, actual: Money | None) -> list[ThresholdCrossing]:
        """Replace the reservation by the request's real cost (None: unpriced, counted as nothing). A request
        that outlived its reservation's TTL (a long stream) is charged all the same."""
        held = self._drop(reservation) or self._expired.pop(reservation.request_key, None)
        if held is None:
            return []
        crossings: list[ThresholdCrossing] = []
        for hold in held.holds:
            budget = self._budgets.get(hold.budget)
            if budget is None:
                continue
            cost = ZERO if actual is None else convert(actual, budget.currency, held.at, self._fx)
            crossings += self._add(budget, hold.period_start, hold.amount if cost is None else cost)
        return crossings

    def reservation(self, request_key: str) -> Reservation | None:
        """The open reservation of a request, if any."""
        return self._reservations.get(request_key)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without spending anything (the request never reached the provider)."""
        self._drop(reservation)

    def now(self) -> datetime:
        return self._clock()

    def charge(self, budgets: Sequence[BudgetConfig], cost: Money, at: datetime) -> list[ThresholdCrossing]:
        """Add a cost that was never reserved (a request the gateway could not estimate beforehand)."""
        when = utc(at)
        crossings: list[ThresholdCrossing] = []
        for budget in budgets:
            amount = convert(cost, budget.currency, when, self._fx)
            if amount is not None:
                crossings += self._add(budget, period_bounds(budget.period, when)[0], amount)
        return crossings

    def expire(self, now: datetime | None = None) -> int:
        """Release reservations older than the TTL (their request never settled); returns how many. Their
        requests may still settle (and be charged) for a day."""
        now = now or self._clock()
        cutoff = now - self._ttl
        stale = [r for r in self._reservations.values() if r.at < cutoff]
        for reservation in stale:
            self._drop(reservation)
            self._expired[reservation.request_key] = reservation
        for key in [k for k, r in self._expired.items() if r.at < now - EXPIRED_KEPT]:
            del self._expired[key]
        return len(stale)

    def status(self, at: datetime | None = None) -> list[BudgetStatus]:
        """Spend, reservations and reset time of every budget's current period."""
        when = utc(at) if at is not None else self._clock()
        out = []
        for budget in self._budgets.values():
            start, end = period_bounds(budget.period, when)
            spend = self._spend.get((budget.name, start))
            spent = spend.spent if spend is not None else ZERO
            out.append(BudgetStatus(budget, start, end, spent, self._reserved.get((budget.name, start), ZERO)))
        return out

    def snapshot(self) -> LedgerState:
        """A copy of the state to save; spend of periods that ended over 40 days ago is left out."""
        horizon = self._clock() - timedelta(days=40)
        spend = {}
        for key, value in self._spend.items():
            budget = self._budgets.get(key[0])
            if budget is not None and period_end(budget.period, key[1]) >= horizon:
                spend[key] = PeriodSpend(value.spent, set(value.fired))
        return LedgerState(spend, dict(self._reservations), self._clock())

    def _restore(self, state: LedgerState) -> None:
        self._spend = {key: PeriodSpend(v.spent, set(v.fired)) for key, v in state.spend.items()}
        cutoff = self._clock() - self._ttl
        for reservation in state.reservations.values():
            if reservation.at >= cutoff:
                self._reservations[reservation.request_key] = reservation
                for hold in reservation.holds:
                    key = (hold.budget, hold.period_start)
                    self._reserved[key] = self._reserved.get(key, ZERO) + hold.amount

    def _used(self, key: SpendKey) -> Decimal:
        spend = self._spend.get(key)
        return (spend.spent if spend is not None else ZERO) + self._reserved.get(key, ZERO)

    def _drop(self, reservation: Reservation) -> Reservation | None:
        held = self._reservations.pop(reservation.request_key, None)
        if held is None:
            return None
        for hold in held.holds:
            key = (hold.budget, hold.period_start)
            left = self._reserved.get(key, ZERO) - hold.amount
            if left > 0:
                self._reserved[key] = left
            else:
                self._reserved.pop(key, None)
        self.changes += 1
        return held

    def _add(self, budget: BudgetConfig, start: datetime, amount: Decimal) -> list[ThresholdCrossing]:
        spend = self._spend.setdefault((budget.name, start), PeriodSpend())
        spend.spent += amount
        self.changes += 1
        return crossings_for(budget, start, spend)

    def _refusal(self, budget: BudgetConfig, resets_at: datetime, used: Decimal, why: str | None) -> Refusal:
        return budget_refusal(budget, resets_at, used, why)


def crossings_for(budget: BudgetConfig, start: datetime, spend: PeriodSpend) -> list[ThresholdCrossing]:
    """Soft thresholds `spend` has passed that have not fired yet; they are marked fired in `spend`."""
    crossings = []
    for threshold in budget.soft:
        if threshold not in spend.fired and spend.spent >= budget.limit * threshold:
            spend.fired.add(threshold)
            crossings.append(
                ThresholdCrossing(
                    budget.name,
                    budget.selector.describe(),
                    threshold,
                    spend.spent,
                    budget.limit,
                    budget.currency,
                    start,
                    period_end(budget.period, start),
                )
            )
    return crossings


def budget_refusal(budget: BudgetConfig, resets_at: datetime, used: Decimal, why: str | None) -> Refusal:
    state = f"{plain(used)} of {plain(budget.limit)} {budget.currency} is spent or reserved"
    message = (
        f"budget {budget.name!r} ({budget.selector.describe()}, per {budget.period}) has no room for this "
        f"request: {state}{'; ' + why if why else ''}; it resets at {iso_z(resets_at)}"
    )
    return Refusal(budget.name, message, resets_at, budget.limit, used, budget.currency)
