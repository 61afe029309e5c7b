"""DuckDB sink: the `llm_usage_events` table, its rollups, and bulk loading of journal segments.

Segments are newline-delimited JSON written by the writer; DuckDB parses them itself, so loading
a batch costs the event loop nothing and holds the GIL only briefly. The files are read as lines
(`read_csv` with a 1 MiB buffer) and each line parsed with `from_json`: `read_json` allocates a
32 MiB buffer per scan whatever its options, which costs more CPU than the parse and would need
that much of `storage.memory_limit` for a load of a few kilobytes.
A load is one transaction over one or more segments: they are staged, the events whose request_id
is not stored yet are inserted, and exactly those are added to the rollups. A segment replayed after a crash thus
neither duplicates a row nor counts an event twice in a rollup.

Finding the new events of journal segments compares them with stored events of the same time
window (cheap: DuckDB skips row groups by their min/max `ts`), since a journaled event keeps its
timestamp however often it is replayed. Files from elsewhere (ingest, import) are compared with
every stored event.

Readers (the admin API, reports) get their own cursor, so a long report never holds up a load.
`maintain()` is called by the writer between loads and applies `retention_days`: raw events older
than that are deleted, rollups keep them, and the cut-off is remembered as the `watermark`. Events
older than the watermark are not loaded any more (their raw rows may be gone, so whether they are
already counted can no longer be told); the ingest paths reject them with a clear message.
Once nothing has been written for `idle_checkpoint` seconds (0: after every load, what a gateway's
store does by default), `maintain()` also checkpoints the file: DuckDB holds the rows written since the
last checkpoint in memory, uncompressed (17.5 MiB of column blocks for a handful of rows), and checkpoints
by itself only after 16 MB of write-ahead log. After a checkpoint every block is in the file, the sink
gives back DuckDB's cache of them (`release_cache`), and after `renew_rows` events or `renew_loads` loads
it opens the file again (`_renew`): DuckDB keeps the metadata of every row group written since it opened
the file, and a few KiB for each load however small. Only that checkpoint vacuums (merges the row groups
loads appended): a vacuum reads the metadata of every row group in the file, 0.55 MiB a million events.
So a store's memory grows neither with its file nor with its uptime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from storage import rollups
from storage.errors import StorageError, StorageLocked
from storage.event import COLUMNS, UsageEvent
from storage.folders import make_folder
from storage.residency import release_duckdb_pages, trim_malloc_heap
from storage.schema import CURRENT_VERSION, EVENTS, META, SchemaError, migrate

if TYPE_CHECKING:  # imported where a connection is opened: a gateway worker reads the store without DuckDB
    import duckdb

log = logging.getLogger("meterway.storage")

TABLE = EVENTS
SCHEMA_VERSION = CURRENT_VERSION
RETENTION_EVERY = 3600.0  # seconds between retention passes
IDLE_CHECKPOINT = 10.0  # seconds without writes after which maintain() checkpoints the file
CACHE_FLOOR = "1MB"  # the memory limit release_cache sets for a moment
RENEW_ROWS = 100_000  # events loaded after which a checkpoint opens the file again (see `_renew`)
RENEW_LOADS = 50  # ... or loads, however few events they carried (each appends a row group)
VACUUM_TASKS = 100  # DuckDB's max_vacuum_tasks, for the checkpoint before a reopening (0 for the others)
T = TypeVar("T")


LINE_BYTES = 1 << 20  # the longest journal line read (UsageEvent.to_json writes far shorter ones)


def read_events(files: str = "?") -> str:
    """A subquery of the events in newline-delimited JSON files (`files`: a SQL expression for a path
    or a list of paths), one column per COLUMNS entry. A line that is not JSON (a torn last line after
    a crash) reads as a row of NULLs, which the loader skips (its request_id is NULL), and a field of
    the wrong type reads as NULL."""
    return read_json_lines(files, COLUMNS)


def read_json_lines(files: str, columns: Sequence[tuple[str, str]]) -> str:
    """A subquery of newline-delimited JSON objects, one column per (name, SQL type) of `columns`,
    read without `read_json`'s 32 MiB scan buffer (see the module's docstring)."""
    struct = "{" + ", ".join(f'"{name}": "{kind.replace(" NOT NULL", "")}"' for name, kind in columns) + "}"
    # \x01 never occurs raw in JSON text, so each line is one field; no quoting, one thread.
    lines = (
        f"read_csv({files}, delim='\x01', quote='', escape='', header=false, auto_detect=false, parallel=false, "
        f"ignore_errors=true, buffer_size={LINE_BYTES}, max_line_size={LINE_BYTES}, columns={{'line': 'VARCHAR'}})"
    )
    # A line that is not a JSON object becomes a row of NULLs: TRY turns from_json's error into NULL.
    # (Checking json_valid first parsed every line twice and held twice the parse memory; a filter on it
    # may run after the parse anyway.)
    return f"(SELECT unnest(TRY(from_json(line, '{struct}'))) FROM {lines})"


def open_duckdb(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Connect, turning DuckDB's lock error into a StorageLocked that says what to do."""
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            holder = str(exc).split("(PID", 1)[1].split(")", 1)[0].strip() if "(PID" in str(exc) else "another"
            raise StorageLocked(
                f"{path} is in use by another process (PID {holder}), probably a running gateway: DuckDB allows "
                "one writer per file"
            ) from None
        raise StorageError(f"cannot open {path}: {exc}") from None
    con.execute("SET TimeZone = 'UTC'; SET max_vacuum_tasks = 0")  # vacuums only before a reopening (VACUUM_TASKS)
    return con


class DuckDBSink:
    """Owns the DuckDB file. Thread-safe: loads and writes are serialized by a lock."""

    idle_checkpoint: float | None = IDLE_CHECKPOINT  # None: never checkpoint when quiet; 0: after every load
    memory_limit: str | None = None  # None: DuckDB's own (most of the machine's memory)
    work_memory_limit: str | None = None
    renew_rows, renew_loads = RENEW_ROWS, RENEW_LOADS

    def __init__(
        self,
        path: Path,
        retention_days: int | None = None,
        threads: int | None = None,
        memory_limit: str | None = None,
        work_memory_limit: str | None = None,
        idle_checkpoint: float | None = IDLE_CHECKPOINT,
    ) -> None:
        """`threads`: DuckDB's worker threads (default: one per core; one does a gateway's small, frequent
        loads with the least CPU, leaving the cores to the request path). `memory_limit` (default: DuckDB's,
        most of the machine's memory) bounds its cache of the file; big queries spill to `<file>.tmp`.
        `work_memory_limit`: the limit while an export or a re-price runs (`working_memory`)."""
        make_folder(path.parent, f"storage.path {path}")
        self.path = path
        self.location = str(path)  # what status pages show as where events are stored
        self.workdir = path.parent  # for scratch files
        import duckdb

        self.threads = threads
        self.idle_checkpoint = idle_checkpoint
        con = open_duckdb(path)
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        try:
            # Before the memory limit: upgrading an older file rewrites it once (a rollup backfill, a table
            # rebuild), which can take far more memory than loads do. It runs under DuckDB's default limit.
            self.upgraded_from = migrate(con, path)
        except SchemaError as exc:
            con.close()
            raise StorageError(str(exc)) from None
        except duckdb.Error as exc:
            con.close()
            raise StorageError(
                f"upgrading {path} to storage schema version {SCHEMA_VERSION} failed "
                f"(the failing step was rolled back): {exc}"
            ) from None
        self.memory_limit, self.work_memory_limit = memory_limit, work_memory_limit
        if memory_limit is not None:
            _set_memory_limit(con, memory_limit)
        self._setup(con, retention_days)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """The file opened again, as it is set up for loads (see `_reopen`)."""
        con = open_duckdb(self.path)
        if self.threads is not None:
            con.execute(f"SET threads = {int(self.threads)}")
        if self.memory_limit is not None:
            _set_memory_limit(con, self.memory_limit)
        return con

    def _setup(self, con: duckdb.DuckDBPyConnection, retention_days: int | None) -> None:
        self.retention_days = retention_days
        self._con = con
        self._invalidated = False  # DuckDB failed fatally; the next write opens the database again
        self._lock = threading.Lock()
        self._reader_lock = threading.Lock()
        self._readers = self._con.cursor()
        self._reading = 0  # reader cursors open (see release_cache)
        self._work_lock = threading.Lock()
        self._working = 0  # exports and re-prices running under work_memory_limit
        self._limit_raised = False
        self._last_maintenance: float | None = None
        self._written: float | None = None  # when the last write committed, until a checkpoint follows
        self._loaded = self._loads = 0  # events and loads since the file was opened (see _renew)
        self._names = ", ".join(name for name, _ in COLUMNS)
        # The new events of some segments: the lines are staged as they are (a filter in the same statement
        # would be pushed below the parse and parse every line twice), then what must not be stored is
        # deleted: torn lines, events older than the watermark, ids already stored, and repeats of an id
        # inside the batch. request_id has no index (DuckDB keeps one in memory, growing with every event),
        # so the stored ids are scanned: for journal segments only those of the segments' time span (a
        # stored copy of a journaled event has its timestamp); for records from elsewhere, all of them.
        self._stage_sql = f"CREATE OR REPLACE TEMP TABLE _new AS SELECT {self._names} FROM {read_events()}"
        stale_sql = (
            f"DELETE FROM _new WHERE request_id IS NULL OR ts IS NULL OR ts < ? OR request_id IN "
            f"(SELECT request_id FROM {TABLE} WHERE_STORED)"
        )
        self._stale_journal_sql = stale_sql.replace(
            "WHERE_STORED", "WHERE ts BETWEEN (SELECT min(ts) FROM _new) AND (SELECT max(ts) FROM _new)"
        )
        self._stale_any_sql = stale_sql.replace(" WHERE_STORED", "")
        row = self._con.execute(f"SELECT value FROM {META} WHERE key = 'retention_watermark'").fetchone()
        self.watermark: datetime | None = datetime.fromisoformat(row[0]) if row else None

    def apply_rollups(self, con: duckdb.DuckDBPyConnection, source: str, sign: int = 1) -> None:
        """Add (or with sign -1 take away) the events in `source` to the rollups, inside the caller's transaction."""
        rollups.apply(con, source, sign)

    # -- loading ---------------------------------------------------------------------------------

    def load_segment(self, segment: Path) -> int:
        """Store a file of events from anywhere (an import, usage records) and add the new ones to the
        rollups; returns how many were new. An event whose request id is stored already is skipped."""
        with self._writing():
            return self._load([segment], journal=False)

    def load_segments(self, segments: list[Path]) -> int:
        """Load journal segments in one transaction (what a store process fed by many workers does);
        a segment loaded twice (a crash between load and delete) adds nothing the second time."""
        if not segments:
            return 0
        with self._writing():
            return self._load(segments)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the write lock; a database DuckDB has invalidated is opened again first, and one that a
        statement here invalidates is reopened after it (the failed write is the caller's to retry)."""
        import duckdb

        with self._lock:
            if self._invalidated:
                self._reopen()
            try:
                yield
            except duckdb.FatalException as exc:
                log.error("storage: DuckDB failed fatally and invalidated %s: %s", self.location, exc)
                self._invalidated = True
                with contextlib.suppress(Exception):
                    self._reopen()
                raise

    def _reopen(self) -> None:
        """After a fatal error (a checkpoint that could not write its blocks, on a full disk) DuckDB refuses
        every statement until the database is opened again. Opening replays its write-ahead log, so what was
        committed stays; if it fails too, the next write tries again. So does a `_renew` that failed."""
        with self._reader_lock:
            self._open_again()
        self._invalidated, self._limit_raised = False, False
        log.warning("storage: %s opened again", self.location)

    def load_events(self, events: Iterable[UsageEvent]) -> int:
        """Store events directly (as one file, see `load_segment`); returns how many were new."""
        fd, name = tempfile.mkstemp(prefix="meterway-", suffix=".jsonl", dir=self.workdir)
        try:
            with os.fdopen(fd, "wb") as out:
                for event in events:
                    out.write(event.to_json() + b"\n")
            return self.load_segment(Path(name))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def _load(self, segments: list[Path], journal: bool = True) -> int:
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(self._stage_sql, [[str(segment) for segment in segments]])
            stale = self._stale_journal_sql if journal else self._stale_any_sql
            con.execute(stale, [self.watermark or datetime.min.replace(tzinfo=UTC)])
            row = con.execute("SELECT count(*), count(DISTINCT request_id) FROM _new").fetchone()
            if row and row[0] != row[1]:  # a segment loaded with its own copy (overlapping replays)
                con.execute(
                    "DELETE FROM _new WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER "
                    "(PARTITION BY request_id ORDER BY rowid) AS n FROM _new) WHERE n > 1)"
                )
            if row and row[0]:
                con.execute(f"INSERT INTO {TABLE} ({self._names}) SELECT {self._names} FROM _new")
                self.apply_rollups(con, "_new")
            con.execute("COMMIT")
            if row and row[0]:
                self._written = time.monotonic()
                self._loaded += int(row[1])
                self._loads += 1
        except Exception:
            _rollback(con)
            raise
        finally:
            con.execute("DROP TABLE IF EXISTS _new")
        return int(row[1]) if row else 0

    # -- writes other than loads -----------------------------------------------------------------

    def transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `work` in one write transaction, serialized with loads."""
        with self._writing():
            return self._transaction(work)

    def _transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            result = work(con)
            con.execute("COMMIT")
        except Exception:
            _rollback(con)
            raise
        self._written = time.monotonic()
        return result

    def apply_retention(self, now: datetime | None = None) -> int:
        """Drop raw events older than `retention_days`; rollups keep them. Returns how many were dropped."""
        if not self.retention_days:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        if self.watermark is not None and cutoff <= self.watermark:
            cutoff = self.watermark

        def drop(con: duckdb.DuckDBPyConnection) -> int:
            row = con.execute(f"DELETE FROM {TABLE} WHERE ts < ?", [cutoff]).fetchone()
            con.execute(f"DELETE FROM {META} WHERE key = 'retention_watermark'")
            con.execute(f"INSERT INTO {META} VALUES ('retention_watermark', ?)", [cutoff.isoformat()])
            return int(row[0]) if row else 0

        dropped = self.transaction(drop)
        self.watermark = cutoff
        if dropped:
            log.info("retention: dropped %d raw events older than %s (rollups keep them)", dropped, cutoff.date())
        return dropped

    def retention_due(self) -> bool:
        last = self._last_maintenance
        return bool(self.retention_days) and (last is None or time.monotonic() - last >= RETENTION_EVERY)

    def maintain(self) -> None:
        """Periodic housekeeping, called by the writer between loads; cheap when nothing is due."""
        if self._limit_raised and not self._working:
            self._shift_limit(0)
        if self.retention_due():
            self._last_maintenance = time.monotonic()
            self.apply_retention()
        written, quiet = self._written, self.idle_checkpoint
        if written is not None and (self._renew_due() or (quiet is not None and time.monotonic() - written >= quiet)):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write everything since the last checkpoint into the file, which empties the write-ahead log and
        gives back the memory DuckDB held those rows in. Serialized with loads; if DuckDB declines (a
        long report's transaction, say), the next quiet spell tries again."""
        import duckdb

        if self._invalidated:  # the next load opens the database again
            return
        with contextlib.suppress(duckdb.FatalException), self._writing():  # _writing logs and reopens
            vacuum = VACUUM_TASKS if self._renew_due() else 0  # only the checkpoint before a reopening
            try:
                self._con.execute(f"SET max_vacuum_tasks = {vacuum}; CHECKPOINT; SET max_vacuum_tasks = 0")
            except duckdb.Error as exc:
                self._written = time.monotonic()
                if isinstance(exc, duckdb.FatalException):
                    raise
                log.info("checkpoint put off: %s", exc)
                return
            self._written = None
            if not vacuum or not self._renew():
                self.release_cache()

    def _renew_due(self) -> bool:  # due under constant load too, not only when quiet
        return self._loaded >= self.renew_rows or self._loads >= self.renew_loads

    def _renew(self) -> bool:
        """Open the file again right after a checkpoint (nothing to replay), only while no read and no export
        runs (closing would end them); returns whether it was done. The file is unlocked for some 20 ms: a
        process that opens it then fails the next load, which retries."""
        with self._work_lock, self._reader_lock:
            if self._reading or self._working:
                return False
            try:
                self._open_again()
            except Exception as exc:
                log.error("storage: %s could not be opened again (the next load tries again): %s", self.location, exc)
                self._invalidated = True
        return True

    def _open_again(self) -> None:
        """Close the file and open it again (the caller holds both locks); give back the pages of the library
        code opening runs and of the metadata closing freed through malloc's heap (storage/residency.py)."""
        for con in (self._readers, self._con):
            with contextlib.suppress(Exception):
                con.close()
        con = self._connect()
        self._con, self._readers = con, con.cursor()
        self._loaded = self._loads = 0
        release_duckdb_pages()
        trim_malloc_heap()

    def release_cache(self) -> None:
        """Drop DuckDB's cache of the file's blocks, kept up to `memory_limit` (blocks the loads' duplicate
        checks and rollup updates read, blocks a checkpoint wrote): the limit goes down for a moment and back.
        Only while no read and no export runs, which a lower limit could fail; the next checkpoint tries again."""
        import duckdb

        if self.memory_limit is None:
            return
        with self._work_lock, self._reader_lock:
            if self._reading or self._working:
                return
            try:
                self._con.execute(f"SET memory_limit = '{CACHE_FLOOR}'")
            except duckdb.Error as exc:  # blocks still pinned: they stay cached until the next try
                log.debug("storage: cache not released: %s", exc)
            _set_memory_limit(self._con, self.memory_limit)

    @contextlib.contextmanager
    def exclusive(self, wait: float = 0) -> Iterator[bool]:
        """Hold the store against other writers' rewrites (re-prices, maintenance); yields whether it is held:
        here always (one process owns a DuckDB file); a lake's replicas take a lease, waiting `wait` seconds."""
        yield True

    @contextlib.contextmanager
    def working_memory(self) -> Iterator[None]:
        """Raise DuckDB's memory limit to `work_memory_limit` while a one-off job that must sort, join or
        rewrite much of the file runs (an export, a re-price); the last job to end sets `memory_limit`
        back, and DuckDB then gives its cache back down to it. Without both limits, nothing changes."""
        if self.memory_limit is None or self.work_memory_limit is None:
            yield
            return
        self._shift_limit(1)
        try:
            yield
        finally:
            self._shift_limit(-1)

    def _shift_limit(self, step: int) -> None:
        import duckdb

        with self._work_lock:
            self._working += step
            want_raised = self._working > 0
            if want_raised == self._limit_raised:
                return
            limit = self.work_memory_limit if want_raised else self.memory_limit
            assert limit is not None
            try:
                with self.reader() as cur:
                    _set_memory_limit(cur, limit)
            except duckdb.Error as exc:  # memory it cannot give back yet: maintenance tries again
                log.warning("storage: DuckDB's memory limit not set to %s yet: %s", limit, exc)
                return
            self._limit_raised = want_raised

    # -- reading ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own for reading; it sees committed data and never blocks loads."""
        with self._reader_lock:
            cur = self._readers.cursor()
            self._reading += 1
        try:
            self._prepare_cursor(cur)
            yield cur
        finally:
            cur.close()
            with self._reader_lock:
                self._reading -= 1

    def _prepare_cursor(self, cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("SET TimeZone = 'UTC'")

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.reader() as cur:
            return cur.execute(sql, params or []).fetchall()

    def writable(self) -> bool:
        import duckdb

        try:
            self.query("SELECT 1")
        except duckdb.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            with self._reader_lock:
                self._readers.close()
            self._con.close()


def _set_memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back whatever is open; a failed COMMIT has already ended the transaction."""
    import duckdb

    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")
