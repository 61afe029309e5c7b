"""The HTTP side every reporting source shares: admin keys, retries on 429, errors, pagination.

`admin_key(env, name)` reads the key from the environment at the moment a client is built; it is
kept in the client's headers only, never written to a snapshot, a log or an error message.
`ReportingClient.get_json` retries a 429 (and 5xx, and connection failures) up to `max_retries`
times, waiting what `retry-after` says (seconds or an HTTP date, capped at `max_delay`) or else an
exponential backoff from `base_delay`. 401 and 403 become an `AdminKeyError` naming the
environment variable. `pages()` follows `next_page` while `has_more` says there is more, the
pagination both OpenAI's and Anthropic's reporting APIs use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from reconcile.errors import AdminKeyError, MissingAdminKey, ProviderAPIError
from reconcile.settings import ClientOptions, ProviderSettings

log = logging.getLogger("meterway.reconcile")

Params = Sequence[tuple[str, str]]
Sleep = Callable[[float], Awaitable[None]]
RETRIED = frozenset({429, 500, 502, 503, 504, 529})
MAX_PAGES = 10_000


def admin_key(env: Mapping[str, str], name: str, label: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise MissingAdminKey(
            f"{name} is not set: reconciling with {label} needs an organization admin key in that environment "
            "variable of the process that reconciles, the running gateway's when there is one (read from the "
            "environment only, never stored)"
        )
    return value


class ReportingClient:
    """An httpx.AsyncClient for one provider's reporting API."""

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        headers: Mapping[str, str],
        key_env: str,
        secret: str,
        max_retries: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.label = label
        self.key_env = key_env
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._secret = secret  # scrubbed from any provider message quoted in an error
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=dict(headers), timeout=timeout, transport=transport
        )

    @classmethod
    def for_provider(
        cls,
        label: str,
        settings: ProviderSettings,
        env: Mapping[str, str],
        options: ClientOptions,
        auth: Callable[[str], Mapping[str, str]],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> ReportingClient:
        """The client a reporting source uses: its admin key from `env`, sent in the headers `auth(key)`."""
        key = admin_key(env, settings.admin_key_env, label)
        return cls(
            label=label, base_url=settings.base_url, key_env=settings.admin_key_env, secret=key, headers=auth(key),
            max_retries=options.max_retries, base_delay=options.base_delay, max_delay=options.max_delay,
            timeout=options.timeout, transport=transport, sleep=asyncio.sleep if sleep is None else sleep,
        )  # fmt: skip

    async def __aenter__(self) -> ReportingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def pages(self, path: str, params: Params) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated report, following `next_page` while `has_more`."""
        page: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            doc = await self.get_json(path, [*params, *([("page", page)] if page else [])])
            yield doc
            page = doc.get("next_page")
            if not doc.get("has_more") or not page:
                return
            if page in seen:
                raise ProviderAPIError(f"{self.label} {path}: next_page {page!r} repeats; stopped paginating")
            seen.add(page)
        raise ProviderAPIError(f"{self.label} {path}: more than {MAX_PAGES} pages; narrow the range")

    async def get_json(self, path: str, params: Params) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await self._http.get(path, params=list(params))
            except httpx.TransportError as exc:
                if last:
                    raise ProviderAPIError(f"{self.label}: cannot reach {self._http.base_url}: {exc}") from None
                await self._wait(attempt, None, f"connection failed ({type(exc).__name__})")
                continue
            if response.status_code == 200:
                return self._decode(path, response)
            if response.status_code in RETRIED and not last:
                await self._wait(attempt, response.headers.get("retry-after"), f"HTTP {response.status_code}")
                continue
            raise self._error(path, response)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    async def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = _retry_after(retry_after)
        if delay is None:
            delay = self.base_delay * 2**attempt
        delay = min(max(delay, 0.0), self.max_delay)
        log.info("%s reporting API: %s; retrying in %.2fs", self.label, why, delay)
        await self._sleep(delay)

    def _decode(self, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            doc = json.loads(response.content, parse_float=Decimal)  # amounts stay exact
        except ValueError:
            raise ProviderAPIError(f"{self.label} {path}: the answer is not JSON", 200) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise ProviderAPIError(f"{self.label} {path}: expected an object with a `data` list", 200)
        return doc

    def _error(self, path: str, response: httpx.Response) -> Exception:
        status = response.status_code
        detail = self._scrub(_provider_message(response))
        if status == 401:
            return AdminKeyError(
                f"{self.label} rejected the admin key in {self.key_env} (HTTP 401: {detail}): set {self.key_env} to "
                "a valid organization admin key"
            )
        if status == 403:
            return AdminKeyError(
                f"{self.label} refused the key in {self.key_env} (HTTP 403: {detail}): it must be an organization "
                "admin key allowed to read usage and costs"
            )
        if status == 429:
            return ProviderAPIError(f"{self.label} {path}: still rate limited after {self.max_retries} retries", 429)
        return ProviderAPIError(f"{self.label} {path}: HTTP {status}: {detail}", status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _provider_message(response: httpx.Response) -> str:
    """The message inside OpenAI's `{"error": {"message"}}` or Anthropic's `{"type": "error", "error": {...}}`."""
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return response.text[:200]
