"""Pricing under /admin: the pre-request quote and a price book reload without restart.

POST /admin/quote           {"provider", "model", "input_tokens", "output_tokens", ["cached_tokens"], ["at"],
                             ["tenant"], ["thinking"], ["service_tier"]}  -> the estimate with its breakdown
POST /admin/prices/reload   re-read the book; an invalid book is refused and the old one stays in force
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

Guard = Callable[[Request], Awaitable[Response | None]]


def _error(status: int, code: str, message: str) -> Response:
    return Response(error_body(status, code, message), status_code=status, media_type="application/json")


def _count(body: dict[str, Any], key: str, required: bool) -> int:
    value = body.get(key, None if required else 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{key}' must be a non-negative integer" + (" (required)" if required else ""))
    return value


def routes(pricer: Callable[[Request], EventPricer], guard: Guard) -> list[Route]:
    async def quote(request: Request) -> Response:
        if (denied := await guard(request)) is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            provider, model = body.get("provider"), body.get("model")
            if not (isinstance(provider, str) and provider and isinstance(model, str) and model):
                raise ValueError("'provider' and 'model' are required strings")
            at = datetime.fromisoformat(body["at"]) if body.get("at") else datetime.now(UTC)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            estimate = pricer(request).pricer.quote(
                provider, model, _count(body, "input_tokens", True), _count(body, "output_tokens", True),
                cached_tokens=_count(body, "cached_tokens", False), at=at, tenant=body.get("tenant"),
                thinking=bool(body.get("thinking")), service_tier=body.get("service_tier"),
            )  # fmt: skip
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
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
        return JSONResponse({"reloaded": True, "message": message, "version": pricer(request).pricer.version})

    return [Route("/admin/quote", quote, methods=["POST"]), Route("/admin/prices/reload", reload, methods=["POST"])]
