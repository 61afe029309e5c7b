"""What a gateway process holds of storage: its event writer, and where storage queries are answered.

`build_storage(config, pricer)` picks one of two shapes:
  - `InlineStorage` (one gateway process, `storage.loader: inline`): the process owns the sink,
    loads its journal into it, and answers the admin API from it.
  - `RemoteStorage` (a worker of `meterway serve --workers N`, or `storage.loader: process`): the
    worker only journals; the store process (storage/store_process.py) owns the sink, loads every
    worker's journal, and answers the admin API, to which the worker forwards those routes.
The app treats both alike: it mounts `routes()`, calls `start()`/`stop()` in its lifespan and asks
`ready()` for the readiness check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from starlette.routing import Route

from gateway.routing import ModelRouter
from storage.api import StorageAPI
from storage.duckdb_sink import DuckDBSink
from storage.errors import StorageError
from storage.sinks import open_sink
from storage.writer import EventSink, EventWriter

if TYPE_CHECKING:
    from gateway.config import Config, StorageConfig
    from gateway.costing import EventPricer
    from storage.reprice import SentUpstream


class StorageRuntime(Protocol):
    writer: EventWriter
    sink: DuckDBSink  # where another process owns the store, a `RemoteSink` that reads through it

    def routes(self) -> list[Route]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...


class InlineStorage:
    def __init__(self, sink: DuckDBSink, writer: EventWriter, api: StorageAPI) -> None:
        self.sink = sink
        self.writer = writer
        self.api = api

    def routes(self) -> list[Route]:
        return self.api.routes()

    async def start(self) -> None:
        await self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()

    async def ready(self) -> bool:
        return await asyncio.to_thread(self.sink.writable)


FSYNC_INTERVAL_MS = 200  # the default: what a power loss may cost of the newest events


def event_writer(sink: EventSink | None, storage: StorageConfig) -> EventWriter:
    return EventWriter(
        sink, storage.spool, storage.flush_interval_ms / 1000, fsync=storage.fsync,
        fsync_interval=(storage.fsync_interval_ms or min(FSYNC_INTERVAL_MS, storage.flush_interval_ms)) / 1000,
        max_pending=storage.max_pending_events,
    )  # fmt: skip


def price_as(config: Config) -> dict[str, str]:
    return {name: p.pricing_provider for name, p in config.providers.items()}


def sent_upstream(config: Config) -> SentUpstream:
    """The model the gateway sends upstream for a requested one, by its current routing (for re-pricing:
    events keep the requested and the reported model, not the one sent)."""
    router = ModelRouter(config.models, config.providers)

    def upstream(provider: str, requested: str) -> str | None:
        found = router.resolve(requested)
        return found[1] if found is not None and found[0].name == provider else None

    return upstream


def inline_storage(config: Config, pricer: EventPricer, spread: Callable[[], None] | None = None) -> InlineStorage:
    """`spread`: how a re-price's book reload reaches the other processes (see `StorageAPI`)."""
    sink = open_sink(config.storage)
    writer = event_writer(sink, config.storage)
    try:
        writer.claim_spool()
    except StorageError:
        sink.close()
        raise
    api = StorageAPI(sink, writer, pricer, price_as(config), sent_upstream(config), spread)
    return InlineStorage(sink, writer, api)


def build_storage(config: Config, pricer: EventPricer) -> StorageRuntime:
    """The storage of one gateway process; raises StorageError when the store cannot be opened."""
    socket = config.storage.store_socket
    if socket is not None:
        from storage.remote import RemoteStorage

        return RemoteStorage(event_writer(None, config.storage), socket, config.storage.memory_limit)
    return inline_storage(config, pricer)
