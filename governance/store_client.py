"""JSON calls from a gateway worker to the store process, on its private Unix socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

Transport = TypeVar("Transport", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


def on_unix_socket(kind: type[Transport], socket: Path) -> Transport:
    """Plain HTTP on the store process's Unix socket. No TLS runs there, hence `verify=False`: by default
    httpx builds a TLS context for every transport and loads the CA bundle into it (about 1 MiB each)."""
    return kind(uds=str(socket), verify=False)


class StoreClient:
    """Posts JSON documents to the store process; a failure raises `unavailable` with what happened."""

    unavailable: type[Exception] = ConnectionError

    def __init__(self, socket: Path, timeout: float = 10) -> None:
        self.socket = socket
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=on_unix_socket(httpx.AsyncHTTPTransport, self.socket), base_url="http://meterway-store",
                timeout=httpx.Timeout(self._timeout, connect=min(5, self._timeout)),
                limits=httpx.Limits(max_connections=32),
            )  # fmt: skip
        return self._client

    async def _post(self, path: str, doc: dict[str, Any]) -> Any:
        try:
            response = await self.client.post(path, content=orjson.dumps(doc),
                                              headers={"content-type": "application/json"})  # fmt: skip
        except httpx.HTTPError as exc:
            raise self.unavailable(f"the store process does not answer: {exc}") from None
        if response.status_code != 200:
            raise self.unavailable(f"the store process answered {response.status_code}: {response.text[:200]}")
        return orjson.loads(response.content)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
