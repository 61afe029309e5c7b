"""Pricing under /admin: the pre-request quote and a price book reload without restart.

POST /admin/quote           {"provider", "model", "input_tokens", "output_tokens", ["cached_tokens"], ["at"],
                             ["tenant"], ["thinking"], ["service_tier"]}  -> the estimate with its breakdown
POST /admin/prices/reload   re-read the book; an invalid book is refused and the old one stays in force.
                            Under `serve --workers N` every other process reloads too (`spread`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.costing import EventPricer
from gateway.providers.openai import error_body
from governance.periods import iso_time
from pricing.book import unknown_tier

Guard = Callable[[Request], Awaitable[Response | None]]
Spread = Callable[[Request], None]  # after a good reload here: have the gateway's other processes reload


class Invalid(ValueError):
    """A bad field of the quote request; `param` names it in the error body."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _error(status: int, code: str, message: str, param: str | None = None) -> Response:
    return Response(error_body(status, code, message, param), status_code=status, media_type="application/json")


def _count(body: dict[str, Any], key: str, required: bool) -> int:
    value = body.get(key, None if required else 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(key, f"'{key}' must be a non-negative integer" + (" (required)" if required else ""))
    return value


def _at(body: dict[str, Any]) -> datetime:
    value = body.get("at")
    if not value:
        return datetime.now(UTC)
    try:
        return iso_time("at", value, "2025-06-01T12:00:00Z")
    except ValueError as exc:
        raise Invalid("at", str(exc)) from None


def _service_tier(body: dict[str, Any], known: tuple[str, ...]) -> str | None:
    tier = body.get("service_tier")
    if tier is not None and tier not in known:
        raise Invalid("service_tier", unknown_tier(f"'service_tier' {tier!r}", known))
    return tier if isinstance(tier, str) else None


QUOTE_FIELDS = (
    "provider", "model", "input_tokens", "output_tokens", "cached_tokens", "at", "tenant", "thinking", "service_tier",
)  # fmt: skip


def routes(pricer: Callable[[Request], EventPricer], guard: Guard, spread: Spread | None = None) -> list[Route]:
    async def quote(request: Request) -> Response:
        if (denied := await guard(request)) is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if unknown := sorted(set(body) - set(QUOTE_FIELDS)):  # a count misnamed must not be quoted as 0
                named, expected = ", ".join(map(repr, unknown)), ", ".join(QUOTE_FIELDS)
                raise Invalid(unknown[0], f"unknown field(s) {named}: expected {expected}")
            provider, model = body.get("provider"), body.get("model")
            if not (isinstance(provider, str) and provider and isinstance(model, str) and model):
                raise ValueError("'provider' and 'model' are required strings")
            quoting = pricer(request).pricer
            input_tokens, cached = _count(body, "input_tokens", True), _count(body, "cached_tokens", False)
            if cached > input_tokens:
                raise Invalid("cached_tokens", f"'cached_tokens' ({cached}) must not exceed 'input_tokens' "
                              f"({input_tokens}): cached tokens are part of the input")  # fmt: skip
            estimate = quoting.quote(
                provider, model, input_tokens, _count(body, "output_tokens", True), cached_tokens=cached,
                at=_at(body), tenant=body.get("tenant"), thinking=bool(body.get("thinking")),
                service_tier=_service_tier(body, quoting.book.service_tiers),
            )  # fmt: skip
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc), exc.param if isinstance(exc, Invalid) else None)
        return JSONResponse(estimate)

    async def reload(request: Request) -> Response:
        if (denied := await guard(request)) is not None:
            return denied
        ok, message = pricer(request).reload()
        if not ok:
            return Response(
                error_body(422, "invalid_price_book", f"price book not reloaded, the old one stays: {message}"),
                status_code=422, media_type="application/json",
            )  # fmt: skip
        if spread is not None:
            spread(request)
        return JSONResponse({"reloaded": True, "message": message, "version": pricer(request).pricer.version})

    return [Route("/admin/quote", quote, methods=["POST"]), Route("/admin/prices/reload", reload, methods=["POST"])]
