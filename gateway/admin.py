"""The admin key guard: one place that decides who may use /admin (and other operator routes).

`AdminGuard` is a plain ASGI middleware. Once `auth.admin_key_env` names an environment variable
that is set, every request under a guarded prefix needs `Authorization: Bearer <that key>`;
anything else gets a 401 in OpenAI's error format. With no admin key configured the routes are
open (a warning says so at start), which suits a gateway on 127.0.0.1 during a first look.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.proxy import Receive, Scope, Send
from governance.keys import bearer_token

GUARDED = ("/admin", "/v1/usage")


def admin_key_variable(raw_config: Mapping[str, Any]) -> str | None:
    """The environment variable `auth.admin_key_env` names, if any."""
    auth = raw_config.get("auth")
    name = auth.get("admin_key_env") if isinstance(auth, dict) else None
    return name if isinstance(name, str) and name else None


def admin_key(raw_config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str | None:
    """The admin key, when `auth.admin_key_env` is configured and that variable is set."""
    env = os.environ if env is None else env
    name = admin_key_variable(raw_config)
    return (env.get(name) or None) if name is not None else None


def is_admin(authorization: str, key: str) -> bool:
    token = bearer_token(authorization)
    return token is not None and hmac.compare_digest(token.encode(), key.encode())


class AdminGuard:
    def __init__(self, app: Any, key: str | None, prefixes: tuple[str, ...] = GUARDED) -> None:
        self.app = app
        self.prefixes = prefixes
        self._key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is not None and scope["type"] == "http" and self._guarded(scope["path"]):
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not is_admin(given.decode("latin-1"), self._key):
                return await _unauthorized(send, bool(given))
        await self.app(scope, receive, send)

    def _guarded(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)


async def _unauthorized(send: Send, had_key: bool) -> None:
    message = "invalid admin key" if had_key else "this route needs the admin key: Authorization: Bearer <admin key>"
    body = orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_admin_key"}}
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="meterway-admin"'),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
