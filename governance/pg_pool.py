"""A few async connections to the catalog database that DuckLake replicas share, for governance state.

`PgPool.transaction()` hands out one connection's cursor inside a transaction. The connections open on
first use; the first one creates the pool's tables under an advisory lock (so replicas starting
together create them once). A failure to reach the database, a connection lost mid-transaction or
an error the database answers with comes out as the pool's `unavailable` exception with what
happened, so each caller decides what a database out of reach means (a hard budget refuses, a rate
limit lets the request through).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg

Cursor = psycopg.AsyncCursor[tuple[object, ...]]

# Advisory lock ids in the catalog database, one per use, kept together so that none is taken twice.
LEDGER_SCHEMA_LOCK = 7_310_112  # replicas starting together create each set of tables once
SCHEDULE_SCHEMA_LOCK = 7_310_113
SCHEDULE_LEASE_LOCK = 7_310_114  # held by the replica running the governance schedule
RATES_SCHEMA_LOCK = 7_310_115


class PgPool:
    def __init__(self, dsn: str, schema: str, schema_lock: int, unavailable: type[Exception], what: str, size: int = 4):
        self.dsn = dsn
        self._schema, self._schema_lock = schema, schema_lock
        self._unavailable, self._what = unavailable, what
        self._size = size
        self._idle: asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]] | None = None
        self._all: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
        self._opening = asyncio.Lock()

    async def _open(self) -> asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]]:
        async with self._opening:
            if self._idle is None:
                idle: asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]] = asyncio.Queue()
                for _ in range(self._size):
                    conn = await psycopg.AsyncConnection.connect(self.dsn)
                    self._all.append(conn)
                    idle.put_nowait(conn)
                first = self._all[0]
                async with first.transaction():
                    await first.execute("SELECT pg_advisory_xact_lock(%s)", [self._schema_lock])
                    await first.execute(self._schema)
                self._idle = idle
            return self._idle

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Cursor]:
        try:
            idle = self._idle if self._idle is not None else await self._open()
        except psycopg.Error as exc:
            raise self._unavailable(f"the {self._what} does not answer: {exc}") from None
        conn = await idle.get()
        try:
            if conn.closed:
                conn = await psycopg.AsyncConnection.connect(self.dsn)
                self._all.append(conn)
            async with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:  # lost, or answering with errors: either way the state is out of reach
            raise self._unavailable(f"the {self._what} failed: {exc}") from None
        finally:
            idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()
        self._idle = None
