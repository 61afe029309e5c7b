"""Budget spend the last save of the ledger missed, found again in the stored events.

A ledger kept in `budgets.json` is saved about once a second. A process that dies between two saves
loses the spend of the requests it settled meanwhile, although their events survive: they were
journaled before each answer ended and are loaded at the next start. `catch_up` runs once at
start, after that load: every stored event whose request ended after the state's `saved_at` is
charged to the budgets it applies to (settling its reservation, if the state still holds one). With
no saved state (a crash before the first save, or budgets configured for the first time), that is
every event of the budgets' current periods. A
request ended when its event says: `ts` plus `duration_ms`. The budget scope uses the event's
provider and its model as recorded (the reported model, where the gateway reserved under the one it
sent upstream).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from governance.budgets import EXPIRED_KEPT, BudgetLedger
from governance.money import Money
from governance.periods import period_start
from governance.scope import RequestScope
from storage.errors import duckdb_error

log = logging.getLogger("meterway.governance")
Query = Callable[[str, list[Any]], list[tuple[Any, ...]]]
_ENDED_AFTER = """
    SELECT request_id, ts, tenant_id, api_key_id, feature, provider, model, model_requested, total_cost, currency
    FROM llm_usage_events
    WHERE ts >= ? AND ts + to_milliseconds(duration_ms) > ? AND total_cost > 0 AND currency IS NOT NULL
    ORDER BY ts
"""


def catch_up(ledger: BudgetLedger, query: Query) -> int:
    """Charge the stored requests that ended after the ledger's state was saved; returns how many. A store
    that cannot be read is logged and left: the budgets then count from their saved state, as before."""
    if not ledger.budgets:
        return 0
    saved = ledger.restored_at
    if saved is None:  # nothing saved yet (a crash before the first save, or a first start): the periods so far
        since = min(period_start(budget.period, ledger.now()) for budget in ledger.budgets)
        window = [since, since]
    else:
        window = [saved - EXPIRED_KEPT, saved]
    try:
        rows = query(_ENDED_AFTER, window)
    except Exception as exc:
        if not duckdb_error(exc):
            raise
        log.error("budgets: the stored events could not be read to catch up on spend: %s", exc)
        return 0
    for request_id, ts, tenant, key, feature, provider, model, requested, cost, currency in rows:
        money = Money(Decimal(cost), currency)
        held = ledger.reservation(request_id)
        if held is not None:
            ledger.settle(held, money)
        else:
            scope = RequestScope(tenant, key, feature, provider, model, requested)
            ledger.charge(ledger.matching(scope), money, ts)
    if rows:
        log.warning("budgets: %d request(s) ended after the last save of the budget state; charged now", len(rows))
    return len(rows)
