"""Budgets shared by every process that enforces them.

A single gateway process keeps its `BudgetLedger` in memory (and in `budgets.json`); the gate calls
it synchronously. Where several processes admit requests, one authority holds the ledger and every
process asks it, asynchronously, through a `SharedLedger`:

  - `meterway serve --workers N`: the store process owns the one `BudgetLedger` (saved to
    `<data dir>/budgets.json`, so it survives restarts) and answers `POST /store/budget/reserve`,
    `/store/budget/settle` and `/store/budget/release` on its private Unix socket; the workers use
    `StoreLedger`. The ledger's check-and-reserve runs synchronously on the store's event loop, so
    concurrent requests from every worker see each other's reservations.
  - `storage.backend: ducklake` (replicas on several machines): `governance.pg_ledger.PostgresLedger`
    keeps spend and reservations in the Postgres catalog database; a reservation is one transaction
    that locks the budget's row.

Budgets travel by name: every process reads the same config. Amounts are decimal strings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from governance.budgets import BudgetLedger, BudgetStatus, Hold, Refusal, Reservation, ThresholdCrossing
from governance.config import BudgetConfig
from governance.money import Money
from governance.store_client import StoreClient

log = logging.getLogger("meterway.governance")
RESERVE_PATH = "/store/budget/reserve"
SETTLE_PATH = "/store/budget/settle"
RELEASE_PATH = "/store/budget/release"
STATUS_PATH = "/store/budget/status"


class LedgerUnavailable(Exception):
    """The shared ledger did not answer: a hard budget cannot be checked."""


class SharedLedger(Protocol):
    async def reserve(
        self, request_key: str, budgets: Sequence[BudgetConfig], estimate: Money | None, at: datetime
    ) -> Reservation | Refusal: ...

    async def settle(self, reservation: Reservation, actual: Money | None) -> list[ThresholdCrossing]: ...

    async def release(self, reservation: Reservation) -> None: ...

    async def status(self, budgets: Sequence[BudgetConfig], at: datetime) -> list[BudgetStatus]: ...

    async def close(self) -> None: ...


def money_json(money: Money | None) -> list[str] | None:
    return None if money is None else [str(money.amount), money.currency]


def money_from(doc: list[str] | None) -> Money | None:
    return None if doc is None else Money(Decimal(doc[0]), str(doc[1]))


def reservation_json(r: Reservation) -> dict[str, Any]:
    return {
        "request_key": r.request_key,
        "at": r.at.isoformat(),
        "estimate": money_json(r.estimate),
        "holds": [[h.budget, h.period_start.isoformat(), str(h.amount)] for h in r.holds],
    }


def reservation_from(doc: dict[str, Any]) -> Reservation:
    return Reservation(
        str(doc["request_key"]),
        datetime.fromisoformat(doc["at"]),
        money_from(doc["estimate"]),
        tuple(Hold(str(b), datetime.fromisoformat(s), Decimal(a)) for b, s, a in doc["holds"]),
    )


def refusal_json(r: Refusal) -> dict[str, Any]:
    return {"budget": r.budget, "message": r.message, "resets_at": r.resets_at.isoformat(), "limit": str(r.limit),
            "used": str(r.used), "currency": r.currency}  # fmt: skip


def refusal_from(doc: dict[str, Any]) -> Refusal:
    return Refusal(str(doc["budget"]), str(doc["message"]), datetime.fromisoformat(doc["resets_at"]),
                   Decimal(doc["limit"]), Decimal(doc["used"]), str(doc["currency"]))  # fmt: skip


def crossing_json(c: ThresholdCrossing) -> dict[str, Any]:
    return {"budget": c.budget, "scope": c.scope, "threshold": str(c.threshold), "spent": str(c.spent),
            "limit": str(c.limit), "currency": c.currency, "period_start": c.period_start.isoformat(),
            "resets_at": c.resets_at.isoformat()}  # fmt: skip


def crossing_from(d: dict[str, Any]) -> ThresholdCrossing:
    return ThresholdCrossing(str(d["budget"]), str(d["scope"]), Decimal(d["threshold"]), Decimal(d["spent"]),
                             Decimal(d["limit"]), str(d["currency"]), datetime.fromisoformat(d["period_start"]),
                             datetime.fromisoformat(d["resets_at"]))  # fmt: skip


class StoreLedger(StoreClient):
    """A worker's view of the store process's ledger (`serve --workers N`)."""

    unavailable = LedgerUnavailable

    async def reserve(
        self, request_key: str, budgets: Sequence[BudgetConfig], estimate: Money | None, at: datetime
    ) -> Reservation | Refusal:
        doc = {"request_key": request_key, "budgets": [b.name for b in budgets], "estimate": money_json(estimate),
               "at": at.isoformat()}  # fmt: skip
        answer = await self._post(RESERVE_PATH, doc)
        if "refusal" in answer:
            return refusal_from(answer["refusal"])
        return reservation_from(answer["reservation"])

    async def settle(self, reservation: Reservation, actual: Money | None) -> list[ThresholdCrossing]:
        doc = {"reservation": reservation_json(reservation), "actual": money_json(actual)}
        answer = await self._post(SETTLE_PATH, doc)
        return [crossing_from(c) for c in answer["crossings"]]

    async def release(self, reservation: Reservation) -> None:
        await self._post(RELEASE_PATH, {"reservation": reservation_json(reservation)})

    async def status(self, budgets: Sequence[BudgetConfig], at: datetime) -> list[BudgetStatus]:
        known = {b.name: b for b in budgets}
        rows = await self._post(STATUS_PATH, {"at": at.isoformat()})
        return [
            BudgetStatus(known[r["budget"]], datetime.fromisoformat(r["period_start"]),
                         datetime.fromisoformat(r["resets_at"]), Decimal(r["spent"]), Decimal(r["reserved"]))
            for r in rows["budgets"]
            if r["budget"] in known
        ]  # fmt: skip


def ledger_routes(ledger: BudgetLedger) -> list[Route]:
    """The store process's side of `StoreLedger`: each call runs synchronously on the store's loop."""

    def _json(doc: Any) -> Response:
        return Response(orjson.dumps(doc), media_type="application/json")

    async def reserve(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        known = {b.name: b for b in ledger.budgets}
        budgets = [known[name] for name in doc["budgets"] if name in known]
        try:
            held = ledger.reserve(
                str(doc["request_key"]), budgets, money_from(doc["estimate"]), datetime.fromisoformat(doc["at"])
            )
        except ValueError as exc:
            return Response(str(exc), status_code=409, media_type="text/plain")
        if isinstance(held, Refusal):
            return _json({"refusal": refusal_json(held)})
        return _json({"reservation": reservation_json(held)})

    async def settle(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        crossings = ledger.settle(reservation_from(doc["reservation"]), money_from(doc["actual"]))
        return _json({"crossings": [crossing_json(c) for c in crossings]})

    async def release(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        ledger.release(reservation_from(doc["reservation"]))
        return _json({})

    async def status(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        rows = [
            {"budget": st.budget.name, "period_start": st.period_start.isoformat(),
             "resets_at": st.resets_at.isoformat(), "spent": str(st.spent), "reserved": str(st.reserved)}
            for st in ledger.status(datetime.fromisoformat(doc["at"]))
        ]  # fmt: skip
        return _json({"budgets": rows})

    return [
        Route(STATUS_PATH, status, methods=["POST"]),
        Route(RESERVE_PATH, reserve, methods=["POST"]),
        Route(SETTLE_PATH, settle, methods=["POST"]),
        Route(RELEASE_PATH, release, methods=["POST"]),
    ]
