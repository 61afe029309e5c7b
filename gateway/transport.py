"""An httpx transport over aiohttp's connection pool.

httpx stays the client API (requests, responses, timeouts, and `MockTransport` in tests);
aiohttp carries the bytes, because its pool costs far less per request under concurrency than
httpcore's. Failures are mapped to the httpx exception that says what happened: connection
refused -> ConnectError, no answer in time -> ReadTimeout / ConnectTimeout, a connection cut
mid-body -> ReadError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx


class _Body(httpx.AsyncByteStream):
    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"upstream stopped sending for too long: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"upstream connection failed mid-body: {exc}") from exc

    async def aclose(self) -> None:
        self._resp.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 1024, keepalive_seconds: float = 120.0) -> None:
        self._limit = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        t = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.get("connect"), sock_read=t.get("read"))
        try:
            resp = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=timeout,
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"cannot connect to {request.url.host}:{request.url.port}: {exc}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer from {request.url.host} in time") from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(f"upstream {request.url.host} failed: {exc}") from exc
        return httpx.Response(resp.status, headers=resp.raw_headers, stream=_Body(resp), request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
