"""Which sink a config asks for: `storage.backend` names one of `BACKENDS`.

`duckdb`: one DuckDB file (`storage.path`), written by one process. `ducklake`: a DuckLake with a
Postgres catalog (`storage.catalog`) and a data path (`storage.data_path`), written by any number
of gateways at once. Both offer the same interface (`DuckDBSink`'s), so the writer, the admin API,
the reports and re-pricing work on either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from storage.duckdb_sink import IDLE_CHECKPOINT, DuckDBSink
from storage.errors import StorageError

if TYPE_CHECKING:
    from gateway.config import StorageConfig


def _duckdb(storage: StorageConfig) -> DuckDBSink:
    return DuckDBSink(
        storage.path, retention_days=storage.retention_days, threads=storage.threads, memory_limit=storage.memory_limit,
        work_memory_limit=storage.work_memory_limit,
        idle_checkpoint=0.0 if storage.checkpoint == "load" else IDLE_CHECKPOINT,
    )  # fmt: skip


def _ducklake(storage: StorageConfig) -> DuckDBSink:
    from storage.ducklake_sink import DuckLakeSink, LakeSettings

    if not storage.catalog or not storage.data_path:
        raise StorageError("storage.backend ducklake needs storage.catalog and storage.data_path")
    settings = LakeSettings(
        storage.catalog, storage.data_path, workdir=storage.spool.parent,
        compaction_interval=float(storage.compaction_interval_s),
    )  # fmt: skip
    return DuckLakeSink(settings, retention_days=storage.retention_days)


BACKENDS: dict[str, Callable[[StorageConfig], DuckDBSink]] = {"duckdb": _duckdb, "ducklake": _ducklake}


def open_sink(storage: StorageConfig) -> DuckDBSink:
    """The configured sink, opened (and its schema created or upgraded); raises StorageError."""
    return BACKENDS[storage.backend](storage)
