"""Where budget state survives restarts: the `BudgetStore` seam and a JSON-file implementation.

A store loads a `LedgerState` when the gateway starts and saves `BudgetLedger.snapshot()` now and
then (`save_changes`, run from a periodic task, does the file I/O in a worker thread so the event
loop never waits on the disk). The JSON file is replaced atomically: a crash leaves either the old
or the new state, never half of one. Amounts are decimal strings, times ISO 8601 UTC.

Where several processes enforce the same budgets, one authority holds the ledger and does each
check-and-reserve itself (see `shared_ledger`): the store process of `serve --workers N`, which
keeps its ledger in this JSON file, or, with DuckLake, the Postgres catalog database (`pg_ledger`).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from governance.budgets import BudgetLedger, Hold, LedgerState, PeriodSpend, Reservation
from governance.files import write_atomically
from governance.money import Money
from governance.periods import iso_z

FORMAT_VERSION = 1


class BudgetStore(Protocol):
    def load(self) -> LedgerState: ...
    def save(self, state: LedgerState) -> None: ...


class MemoryBudgetStore:
    def __init__(self) -> None:
        self.state = LedgerState()
        self.saves = 0

    def load(self) -> LedgerState:
        return self.state

    def save(self, state: LedgerState) -> None:
        self.state = state
        self.saves += 1


class JsonFileBudgetStore:
    """Budget state in one JSON file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> LedgerState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return LedgerState()
        return state_from_json(json.loads(text))

    def save(self, state: LedgerState) -> None:
        write_atomically(self.path, json.dumps(state_to_json(state), indent=1, sort_keys=True).encode())


async def save_changes(ledger: BudgetLedger, store: BudgetStore, saved_at_change: int) -> int:
    """Save the ledger if it changed since `saved_at_change`; returns the change count now saved."""
    changes = ledger.changes
    if changes == saved_at_change:
        return changes
    state = ledger.snapshot()  # taken on the loop, so it is consistent
    await asyncio.to_thread(store.save, state)
    return changes


def state_to_json(state: LedgerState) -> dict[str, Any]:
    spend = [
        {
            "budget": name,
            "period_start": iso_z(start),
            "spent": str(value.spent),
            "fired": sorted(str(t) for t in value.fired),
        }
        for (name, start), value in sorted(state.spend.items())
    ]
    reservations = [
        {
            "request_key": r.request_key,
            "at": r.at.isoformat(),
            "estimate": None if r.estimate is None else [str(r.estimate.amount), r.estimate.currency],
            "holds": [[h.budget, iso_z(h.period_start), str(h.amount)] for h in r.holds],
        }
        for r in state.reservations.values()
    ]
    saved_at = None if state.saved_at is None else state.saved_at.isoformat()
    return {"version": FORMAT_VERSION, "spend": spend, "reservations": reservations, "saved_at": saved_at}


def state_from_json(doc: dict[str, Any]) -> LedgerState:
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"budget state: unsupported format version {doc.get('version')!r}")
    state = LedgerState()
    for item in doc.get("spend", []):
        key = (str(item["budget"]), _time(item["period_start"]))
        state.spend[key] = PeriodSpend(Decimal(item["spent"]), {Decimal(t) for t in item.get("fired", [])})
    for item in doc.get("reservations", []):
        estimate = item.get("estimate")
        reservation = Reservation(
            request_key=str(item["request_key"]),
            at=_time(item["at"]),
            estimate=None if estimate is None else Money(Decimal(estimate[0]), str(estimate[1])),
            holds=tuple(Hold(str(b), _time(s), Decimal(a)) for b, s, a in item.get("holds", [])),
        )
        state.reservations[reservation.request_key] = reservation
    if doc.get("saved_at"):
        state.saved_at = _time(str(doc["saved_at"]))
    return state


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"budget state: time without a timezone: {text!r}")
    return at
