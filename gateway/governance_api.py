"""Governance under /admin (behind the admin key once one is configured).

GET    /admin/keys              the gateway keys (ids, tenants, limits; never the keys)
POST   /admin/keys              {"tenant", ["name", "user", "feature", "expires_at", "allowed_models",
                                  "allowed_providers"]} -> the record and, once, the key itself
DELETE /admin/keys/{id}         revoke
GET    /admin/budgets           every budget with its period, spend, reservations, remaining and reset time
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.governance_setup import Governance
from gateway.providers.openai import error_body
from governance.periods import iso_time, iso_z


def _error(status: int, code: str, message: str) -> Response:
    return Response(error_body(status, code, message), status_code=status, media_type="application/json")


KEY_FIELDS = ("tenant", "name", "user", "feature", "expires_at", "allowed_models", "allowed_providers")


def _strings(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a list of strings")
    return tuple(value)


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {type(value).__name__}")
    return value or None


def routes(governance: Callable[[Request], Governance]) -> list[Route]:
    async def list_keys(request: Request) -> Response:
        return JSONResponse({"keys": [k.public() for k in governance(request).keys.list()]})

    async def create_key(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict) or not isinstance(body.get("tenant"), str) or not body["tenant"]:
                raise ValueError("'tenant' (a non-empty string) is required")
            if unknown := sorted(set(body) - set(KEY_FIELDS)):  # a restriction misspelt must not go missing
                raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}: expected {', '.join(KEY_FIELDS)}")
            expires = body.get("expires_at")
            expires_at = None if expires is None else iso_time("expires_at", expires, "2027-01-01T00:00:00Z")
            record, raw = governance(request).keys.create(
                body["tenant"], name=_text(body, "name"), user=_text(body, "user"), feature=_text(body, "feature"),
                expires_at=expires_at, allowed_models=_strings(body, "allowed_models"),
                allowed_providers=_strings(body, "allowed_providers"),
            )  # fmt: skip
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        return JSONResponse({**record.public(), "key": raw}, status_code=201)

    async def revoke_key(request: Request) -> Response:
        record = governance(request).keys.revoke(request.path_params["key_id"])
        if record is None:
            return _error(404, "not_found", f"no key with id {request.path_params['key_id']!r}")
        return JSONResponse(record.public())

    async def budgets(request: Request) -> Response:
        rows = [
            {
                "name": s.budget.name,
                "period": s.budget.period,
                "currency": s.budget.currency,
                "limit": _plain(s.budget.limit),
                "hard": s.budget.hard,
                "period_start": iso_z(s.period_start),
                "resets_at": iso_z(s.resets_at),
                "spent": _plain(s.spent),
                "reserved": _plain(s.reserved),
                "remaining": _plain(s.remaining),
            }
            for s in await governance(request).budget_status()
        ]
        return JSONResponse({"budgets": rows})

    return [
        Route("/admin/keys", list_keys, methods=["GET"]),
        Route("/admin/keys", create_key, methods=["POST"]),
        Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/budgets", budgets, methods=["GET"]),
    ]


def _plain(value: Decimal) -> str:
    return format(value, "f")
