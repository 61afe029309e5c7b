"""Rate limits shared by the workers of `meterway serve --workers N`.

A single gateway process keeps its token buckets in memory (`governance.ratelimit.RateLimiter`). With
several workers each would otherwise count only the requests it admitted, and N workers would let N
times the limit through. So the store process owns the one `RateLimiter` and answers
`POST /store/rate/acquire`, `/store/rate/settle` and `/store/rate/release` on its private Unix socket;
the workers use `StoreRates`. Each call runs synchronously on the store's event loop, so concurrent
requests from every worker take from the same buckets. DuckLake replicas on several machines share
their buckets in the catalog database instead (`governance.pg_rates`).

When the store process does not answer (it is being restarted), a worker admits the request without
a rate check and logs it: rate limits protect a provider's quota, which answers with its own 429s,
whereas a hard budget (money) is refused instead (`governance.shared_ledger`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from governance.ratelimit import BucketKey, RateGrant, RateLimiter, RateRefusal
from governance.scope import RequestScope
from governance.store_client import StoreClient

ACQUIRE_PATH = "/store/rate/acquire"
SETTLE_PATH = "/store/rate/settle"
RELEASE_PATH = "/store/rate/release"
_SCOPE = ("tenant", "key", "feature", "provider", "model", "model_requested")


class RatesUnavailable(Exception):
    """The store process (or, for DuckLake replicas, the catalog database) did not answer a rate-limit call."""


class SharedRates(Protocol):
    """Rate limits taken outside this process: the store process's buckets, or the replicas' database."""

    async def acquire(self, scope: RequestScope, estimated_tokens: int) -> RateGrant | RateRefusal: ...

    async def settle(self, grant: RateGrant, actual_tokens: int) -> None: ...

    async def release(self, grant: RateGrant) -> None: ...

    async def close(self) -> None: ...


def grant_json(grant: RateGrant) -> dict[str, Any]:
    return {"requests": [list(key) for key in grant.requests], "tokens": [[list(k), n] for k, n in grant.tokens]}


def _key(doc: list[Any]) -> BucketKey:
    name, kind, per = doc
    return str(name), str(kind), tuple(per)


def grant_from(doc: dict[str, Any]) -> RateGrant:
    return RateGrant(tuple(_key(k) for k in doc["requests"]), tuple((_key(k), float(n)) for k, n in doc["tokens"]))


class StoreRates(StoreClient):
    """A worker's view of the store process's rate limiter."""

    unavailable = RatesUnavailable

    def __init__(self, socket: Path) -> None:
        super().__init__(socket, timeout=5)

    async def acquire(self, scope: RequestScope, estimated_tokens: int) -> RateGrant | RateRefusal:
        doc = {"scope": {name: scope.value(name) for name in _SCOPE}, "tokens": estimated_tokens}
        answer = await self._post(ACQUIRE_PATH, doc)
        if "refusal" in answer:
            r = answer["refusal"]
            return RateRefusal(str(r["limit"]), str(r["kind"]), float(r["retry_after"]), str(r["message"]))
        return grant_from(answer["grant"])

    async def settle(self, grant: RateGrant, actual_tokens: int) -> None:
        await self._post(SETTLE_PATH, {"grant": grant_json(grant), "actual": actual_tokens})

    async def release(self, grant: RateGrant) -> None:
        await self._post(RELEASE_PATH, {"grant": grant_json(grant)})


def rate_routes(limiter: RateLimiter) -> list[Route]:
    """The store process's side of `StoreRates`."""

    def _json(doc: Any) -> Response:
        return Response(orjson.dumps(doc), media_type="application/json")

    async def acquire(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        scope = RequestScope(**{name: doc["scope"].get(name) for name in _SCOPE})
        taken = limiter.acquire(scope, int(doc["tokens"]))
        if isinstance(taken, RateRefusal):
            return _json({"refusal": {"limit": taken.limit, "kind": taken.kind, "retry_after": taken.retry_after,
                                      "message": taken.message}})  # fmt: skip
        return _json({"grant": grant_json(taken)})

    async def settle(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        limiter.settle(grant_from(doc["grant"]), int(doc["actual"]))
        return _json({})

    async def release(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        limiter.release(grant_from(doc["grant"]))
        return _json({})

    return [
        Route(ACQUIRE_PATH, acquire, methods=["POST"]),
        Route(SETTLE_PATH, settle, methods=["POST"]),
        Route(RELEASE_PATH, release, methods=["POST"]),
    ]
