"""The upstream HTTP client seam: one `send()` that returns a streamed response.

Two implementations behind the same small interface:

- `AiohttpUpstream`, the default: aiohttp's connection pool used directly. On this hot path
  httpx's client layer (request and response models, header and URL objects, cookie handling)
  cost more CPU per request than everything Meterway does to meter it, so the proxy talks to
  aiohttp without it.
- `HttpxUpstream`: any httpx transport (the built-in `demo` provider's simulated upstream, or a
  test's `MockTransport`), for the cases where httpx's pluggability matters more than its cost.

Failures come out as three exceptions that say what happened: `UpstreamConnectError` (nothing
reached the provider), `UpstreamTimeout` (no answer, or no bytes, in time) and `UpstreamBroken`
(the connection failed after the request was sent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
import httpx

Headers = list[tuple[str, str]]


class UpstreamError(Exception):
    """The upstream failed after the request was sent (base of the other two)."""


class UpstreamConnectError(UpstreamError):
    """Nothing reached the provider."""


class UpstreamTimeout(UpstreamError):
    """No answer, or no bytes, in time."""


class UpstreamBroken(UpstreamError):
    """The connection failed after the request was sent."""


class UpstreamResponse(Protocol):
    status: int
    raw_headers: list[tuple[bytes, bytes]]
    content_type: str

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    async def close(self) -> None: ...


class Upstream(Protocol):
    async def send(
        self, method: str, url: str, headers: Headers, body: bytes, read_timeout: float
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_resp", "content_type", "raw_headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.raw_headers = list(resp.raw_headers)
        self.content_type = resp.headers.get("content-type", "")

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream stopped sending for too long: {exc or 'timeout'}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(f"upstream connection failed mid-body: {exc}") from exc

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream stopped sending for too long: {exc or 'timeout'}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(f"upstream connection failed mid-body: {exc}") from exc

    async def close(self) -> None:
        self._resp.release()


class AiohttpUpstream:
    def __init__(self, max_connections: int = 1024, keepalive_seconds: float = 120.0) -> None:
        self._limit = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(seconds)
        if found is None:
            found = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, seconds), sock_read=seconds)
            self._timeouts[seconds] = found
        return found

    async def send(self, method: str, url: str, headers: Headers, body: bytes, read_timeout: float) -> UpstreamResponse:
        session = self._session or self._open()
        try:
            resp = await session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(read_timeout),
            )
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"cannot connect: {exc}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(f"request failed: {exc}") from exc
        return _AiohttpResponse(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _HttpxResponse:
    __slots__ = ("_resp", "content_type", "raw_headers", "status")

    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.raw_headers = list(resp.headers.raw)
        self.content_type = resp.headers.get("content-type", "")

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self._resp.is_stream_consumed:  # a transport that answered with a complete body
            yield self._resp.content
            return
        try:
            async for chunk in self._resp.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or "timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamBroken(str(exc)) from exc

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def close(self) -> None:
        await self._resp.aclose()


class HttpxUpstream:
    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._client = httpx.AsyncClient(transport=transport, timeout=None, follow_redirects=False)

    async def send(self, method: str, url: str, headers: Headers, body: bytes, read_timeout: float) -> UpstreamResponse:
        request = self._client.build_request(
            method,
            url,
            headers=headers,
            content=body,
            timeout=httpx.Timeout(read_timeout, connect=min(10.0, read_timeout)),
        )
        try:
            return _HttpxResponse(await self._client.send(request, stream=True))
        except httpx.ConnectError as exc:
            raise UpstreamConnectError(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or "timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamBroken(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()
