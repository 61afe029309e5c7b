"""The storage errors, importable without loading DuckDB (the supervisor and the CLI need only these)."""

from __future__ import annotations

import sys


class StorageError(Exception):
    """The store cannot be opened or used; the message is meant for the operator as is."""


class StorageLocked(StorageError):
    """Another process has the DuckDB file open for writing."""


class StoreError(Exception):
    """What went wrong with a store command (`meterway events`, `report`, ...), worded for the operator."""


class RelayedStoreError(Exception):
    """A DuckDB error the store process met running a worker's read (`storage.remote.RemoteSink`), relayed
    with the name of DuckDB's exception class (`kind`) so the worker answers it as it would its own."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def duckdb_error(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB's, without loading DuckDB (a worker of `serve --workers N` never does)."""
    if isinstance(exc, RelayedStoreError):
        return True
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.Error)


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB's duckdb.OutOfMemoryException (by name: checking needs no import)."""
    kind = exc.kind if isinstance(exc, RelayedStoreError) else type(exc).__name__
    return kind == "OutOfMemoryException"


def store_failure(exc: BaseException, limit: tuple[str, str | None]) -> str:
    """What to tell the operator about a DuckDB error from a query or a job: its first line, and for running
    out of memory, how to make room. `limit` is the setting that applied and its value (None: DuckDB's own)."""
    detail = str(exc).split("\n", 1)[0]
    if not out_of_memory(exc):
        return f"the store could not do it: {detail}"
    key, value = limit
    raise_it = f" or raise {key} (now {value})" if value else ""
    return f"the store ran out of memory ({detail}): ask for a shorter time range (since / until){raise_it}"
