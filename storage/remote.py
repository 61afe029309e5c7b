"""A gateway worker's side of the store process: it journals, and forwards storage routes to the store.

The store process answers the storage API on a Unix socket only the gateway's processes use (it
sits in a directory only the gateway's user may enter). A worker mounts the same paths
(`storage.api.ROUTES`) with one handler that relays the request (the admin key header included:
the store checks it too) and streams the answer back, so exports of any size pass through without
being held in memory. Forwarded answers carry `x-meterway-worker` (the worker's pid). When the
store does not answer, the route gets a 503 and readiness turns off.

Other parts of the gateway that read the store through `gateway.sink` (the dashboard, the
reconciliation report) get a `RemoteSink`: its `reader()` cursors send each read-only statement to
the store (`POST /store/sql`) and get the rows back with their Python types intact (pickled; the
socket is private to the gateway's processes). Every statement runs on a fresh cursor in the store,
so temporary tables do not outlive one statement. A statement DuckDB fails there raises a
`RelayedStoreError` that names DuckDB's exception class, so a worker answers a store that ran out of
memory as the single process does, without loading DuckDB itself. Writes are the store's alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from governance.store_client import on_unix_socket
from storage.api import ROUTES, error
from storage.duckdb_sink import DuckDBSink
from storage.errors import RelayedStoreError, StorageError
from storage.writer import EventWriter

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("meterway.storage")
READY_PATH = "/store/ready"
SQL_PATH = "/store/sql"
ERROR_KIND = "x-meterway-error-kind"  # the class name of the DuckDB error a read met in the store process
PICKLE = "application/x-python-pickle"
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "proxy-connection"}
_OWN = _HOP | {"date", "server"}  # the worker's server sets these on the answer itself


class RemoteStorage:
    def __init__(self, writer: EventWriter, socket: Path, memory_limit: str | None = None) -> None:
        self.writer = writer
        self.sink: DuckDBSink = RemoteSink(socket, memory_limit)
        self.socket = socket
        self._client: httpx.AsyncClient | None = None
        self._worker = str(os.getpid()).encode()

    def routes(self) -> list[Route]:
        return [Route(path, self.forward, methods=methods) for path, _, methods in ROUTES]

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=on_unix_socket(httpx.AsyncHTTPTransport, self.socket), base_url="http://meterway-store",
                timeout=httpx.Timeout(600, connect=5),
            )  # fmt: skip
        return self._client

    async def start(self) -> None:
        await self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()
        self.sink.close()
        if self._client is not None:
            await self._client.aclose()

    async def ready(self) -> bool:
        try:
            response = await self.client.get(READY_PATH, timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def forward(self, request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in _HOP]
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        outgoing = self.client.build_request(request.method, target, headers=headers, content=await request.body())
        try:
            answer = await self.client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            log.error("the store process did not answer %s %s: %s", request.method, request.url.path, exc)
            return error(503, "storage is not available: the store process does not answer", "storage_unavailable")
        response = StreamingResponse(
            answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
        )
        response.raw_headers = [
            *((k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in _OWN),
            (b"x-meterway-worker", self._worker),
        ]
        return response


class RemoteSink(DuckDBSink):
    """The store as a worker sees it: reads go to the store process, writes are refused."""

    def __init__(self, socket: Path, memory_limit: str | None = None) -> None:  # not DuckDBSink's: no file here
        """`memory_limit`: the store process's, named when a read runs out of memory there."""
        self.socket = socket
        self.memory_limit = memory_limit
        self.path = socket
        self.location = f"the store process at {socket}"
        self.workdir = socket.parent
        self.retention_days = None
        self.watermark = None
        self.upgraded_from = 0
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                transport=on_unix_socket(httpx.HTTPTransport, self.socket), base_url="http://meterway-store",
                timeout=httpx.Timeout(600, connect=5),
            )  # fmt: skip
        return self._http

    def run(self, sql: str, params: list[Any] | None = None) -> tuple[Any, list[tuple[Any, ...]]]:
        """(description, rows) of one read-only statement, run by the store process."""
        try:
            response = self.http.post(SQL_PATH, content=pickle.dumps((sql, params or [])),
                                      headers={"content-type": PICKLE})  # fmt: skip
        except httpx.HTTPError as exc:
            raise RelayedStoreError("ConnectionException", f"the store process does not answer: {exc}") from None
        if response.status_code != 200:
            raise RelayedStoreError(response.headers.get(ERROR_KIND, "Error"), response.text)
        result: tuple[Any, list[tuple[Any, ...]]] = pickle.loads(response.content)
        return result

    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        yield cast("duckdb.DuckDBPyConnection", RemoteCursor(self))

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.run(sql, params)[1]

    def writable(self) -> bool:
        try:
            return self.http.get(READY_PATH, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def load_segments(self, segments: list[Path]) -> int:
        raise StorageError("the store process loads the journal; a worker never writes the store")

    def load_segment(self, segment: Path) -> int:
        return self.load_segments([segment])

    def transaction(self, work: Any) -> Any:
        raise StorageError("the store process owns the store; a worker never writes it")

    def maintain(self) -> None:
        return None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


class RemoteCursor:
    """Enough of a DuckDB cursor for reading: execute, then fetch."""

    def __init__(self, sink: RemoteSink) -> None:
        self.sink = sink
        self.description: Any = None
        self._rows: list[tuple[Any, ...]] = []
        self._at = 0

    def execute(self, sql: str, parameters: Any = None) -> RemoteCursor:
        self.description, self._rows = self.sink.run(sql, list(parameters or []))
        self._at = 0
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._rows[self._at] if self._at < len(self._rows) else None
        self._at += row is not None
        return row

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._rows[self._at : self._at + size]
        self._at += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._at :]
        self._at = len(self._rows)
        return rows

    def close(self) -> None:
        self._rows = []
