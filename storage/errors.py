"""The storage errors, importable without loading DuckDB (the supervisor and the CLI need only these)."""

from __future__ import annotations


class StorageError(Exception):
    """The store cannot be opened or used; the message is meant for the operator as is."""


class StorageLocked(StorageError):
    """Another process has the DuckDB file open for writing."""


class StoreError(Exception):
    """What went wrong with a store command (`meterway events`, `report`, ...), worded for the operator."""
