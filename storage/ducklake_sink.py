"""DuckLake sink: the same tables as the DuckDB file, in a lake that many gateways write at once.

A DuckLake keeps its catalog (tables, snapshots, file lists) in Postgres and its data as Parquet
files under a data path (a local or shared folder, or an object store URL), so gateway replicas on
different machines each attach it and write concurrently, and every report sees all of it. The
`ducklake` and `postgres` extensions (and `httpfs` for an object store) come from Python packages
(storage/extensions.py); nothing is downloaded.

Loading works as in `DuckDBSink` (one transaction: stage, skip the request ids already stored,
insert, roll up), with two differences that make several writers safe:
  - Rollups are appended as delta rows (`rollups.append`) instead of upserted. DuckLake resolves
    conflicts per table: concurrent inserts always commit, while a transaction that deletes or
    updates rows of a table fails at COMMIT if another one wrote that table meanwhile. Appends keep
    loads from different replicas out of each other's way.
  - A transaction that loses such a conflict (a load against a fold, a re-price against loads) is
    retried from the start on a fresh snapshot, so nothing is counted on a stale view.
Duplicates are avoided as in the file: each replica loads only its own journal, and the request
ids already stored are skipped. (DuckLake has no primary keys, so two replicas ingesting the same
external usage record at the same moment could both store it.)

`maintain()` adds compaction every `compaction_interval` seconds to the retention pass: rollup
deltas are folded into one row per key, inlined rows are flushed to Parquet, adjacent small files
are merged, old snapshots expire and the files they alone used are deleted. Each step that loses a
conflict with a load is skipped until the next pass.
Maintenance and re-pricing run under a lease (`exclusive`), one replica at a time: DuckLake's
conflict checks do not cover every pair of them. Flushing inlined deletions while another replica
folds the same table can lose the flush's deletions, bringing folded delta rows back, so a rollup
counts them twice. The lease is a row of `meterway_lease` (holder, expiry); taking it deletes the
row and inserts a new one, so two replicas taking it at once conflict and one of them loses. It is
let go when the work ends and runs out after LEASE_SECONDS if its holder dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb

from storage import rollups
from storage.duckdb_sink import DuckDBSink
from storage.errors import StorageError
from storage.event import COLUMNS
from storage.extensions import OFFLINE, ExtensionError, ExtensionLoader
from storage.folders import make_folder
from storage.schema import AUDIT_DDL, CURRENT_VERSION, EVENTS, META, add_event_columns

log = logging.getLogger("meterway.storage")
T = TypeVar("T")

LAKE = "lake"  # the name the lake is attached under
OBJECT_STORES = ("s3://", "gs://", "gcs://", "r2://")
ATTEMPTS = 8  # tries of a transaction that keeps losing conflicts
SNAPSHOT_KEEP_HOURS = 24  # snapshots younger than this stay, so running queries keep their files
FILE_GRACE_HOURS = 1  # files dropped from every kept snapshot are deleted after this
LEASE = "meterway_lease"  # one row: which replica maintains the lake, and until when
LEASE_SECONDS = 900  # a lease whose holder died runs out after this
LEASE_POLL = 0.5  # seconds between tries while waiting for the lease
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LakeSettings:
    catalog: str  # e.g. "postgres:dbname=meterway host=db user=meterway"
    data_path: str  # a folder, or an object store URL
    workdir: Path  # local scratch space (staged segments, re-price files)
    compaction_interval: float = 900.0


class DuckLakeSink(DuckDBSink):
    idle_checkpoint = None  # a lake writes its data files at each commit; compaction is its housekeeping

    def __init__(self, settings: LakeSettings, retention_days: int | None = None) -> None:
        self.settings = settings
        self.path = settings.workdir
        self.location = f"ducklake {redact(settings.catalog)} data {settings.data_path}"
        self.workdir = settings.workdir
        make_folder(self.workdir, "the DuckLake work folder (where the event journal is)")
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._exclusive = threading.Lock()
        con = open_lake(settings)
        try:
            self._last_compaction = time.monotonic()
            self.upgraded_from = _retrying(lambda: _create_schema(con))
            _retrying(lambda: _seed_lease(con))
        except (duckdb.Error, StorageError) as exc:
            con.close()
            raise StorageError(str(exc)) from None
        self._setup(con, retention_days)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return open_lake(self.settings)

    def apply_rollups(self, con: duckdb.DuckDBPyConnection, source: str, sign: int = 1) -> None:
        rollups.append(con, source, sign)

    def _load(self, segments: list[Path], journal: bool = True) -> int:
        return _retrying(lambda: DuckDBSink._load(self, segments, journal))

    def _transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return _retrying(lambda: DuckDBSink._transaction(self, work))

    def _prepare_cursor(self, cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(f"SET TimeZone = 'UTC'; USE {LAKE}")

    def writable(self) -> bool:
        try:
            self.query(f"SELECT 1 FROM {META} LIMIT 1")
        except duckdb.Error:
            return False
        return True

    def maintain(self) -> None:
        """Retention and compaction when due, under the lease; while another replica holds it, next time."""
        compaction_due = time.monotonic() - self._last_compaction >= self.settings.compaction_interval
        if not (compaction_due or self.retention_due()):
            return
        with self.exclusive() as held:
            if held:
                super().maintain()
                if compaction_due:
                    self.compact()

    @contextlib.contextmanager
    def exclusive(self, wait: float = 0) -> Iterator[bool]:
        deadline = time.monotonic() + wait
        # One holder per process too (the writer's maintenance and an admin re-price share this sink's lease).
        if not self._exclusive.acquire(timeout=wait):
            yield False
            return
        held = False
        try:
            while not (held := self._take_lease()) and time.monotonic() < deadline:
                time.sleep(LEASE_POLL)
            yield held
        finally:
            if held:
                self._let_go()
            self._exclusive.release()

    def _take_lease(self) -> bool:
        def take(con: duckdb.DuckDBPyConnection) -> bool:
            now = datetime.now(UTC)
            rows = con.execute(f"SELECT holder, expires FROM {LEASE}").fetchall()
            if any(holder != self.holder and expires > now for holder, expires in rows):
                return False
            con.execute(f"DELETE FROM {LEASE}")
            con.execute(f"INSERT INTO {LEASE} VALUES (?, ?)", [self.holder, now + timedelta(seconds=LEASE_SECONDS)])
            return True

        try:
            with self._lock:
                return DuckDBSink._transaction(self, take)  # not retried: a conflict means another replica took it
        except duckdb.Error as exc:
            log.debug("lake lease not taken: %s", _first_line(exc))
            return False

    def _let_go(self) -> None:
        def release(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(f"UPDATE {LEASE} SET expires = ? WHERE holder = ?", [EPOCH, self.holder])

        try:
            self.transaction(release)
        except duckdb.Error as exc:  # it runs out by itself
            log.warning("could not let go of the lake's maintenance lease: %s", _first_line(exc))

    def compact(self) -> None:
        """Fold rollup deltas and merge small files (under the lease: see `maintain`); a step that conflicts with a
        load waits for next time."""
        self._last_compaction = time.monotonic()
        for table in rollups.TABLES:
            try:
                self.transaction(_folder(table))
            except duckdb.Error as exc:
                log.info("folding %s skipped this time: %s", table, _first_line(exc))
        steps = (
            f"CALL ducklake_flush_inlined_data('{LAKE}')",
            f"CALL ducklake_merge_adjacent_files('{LAKE}')",
            f"CALL ducklake_expire_snapshots('{LAKE}', older_than => now() - INTERVAL {SNAPSHOT_KEEP_HOURS} HOUR)",
            f"CALL ducklake_cleanup_old_files('{LAKE}', older_than => now() - INTERVAL {FILE_GRACE_HOURS} HOUR)",
        )
        for sql in steps:
            try:
                with self._lock:
                    self._con.execute(sql).fetchall()
            except duckdb.Error as exc:
                log.info("lake maintenance step skipped this time (%s): %s", sql.split("(")[0], _first_line(exc))


def _folder(table: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    return lambda con: rollups.fold(con, table)


def open_lake(settings: LakeSettings) -> duckdb.DuckDBPyConnection:
    """A connection with the extensions loaded from their packages and the lake attached as `lake`."""
    con = duckdb.connect(config=dict(OFFLINE))
    loader = ExtensionLoader()
    remote = settings.data_path.startswith(OBJECT_STORES)
    try:
        loader.load(con, "postgres", "ducklake", *(("httpfs",) if remote else ()))
        con.execute("SET TimeZone = 'UTC'")
        if remote:
            _object_store_secret(con, settings.data_path)
        attach = (
            f"ATTACH {_literal('ducklake:' + settings.catalog)} AS {LAKE} (DATA_PATH {_literal(settings.data_path)})"
        )
        for n in range(ATTEMPTS):
            try:
                con.execute(attach)
                break
            except duckdb.Error as exc:  # two replicas creating a new catalog at once: one wins, the other retries
                if not any(s in str(exc) for s in _INIT_RACES) or n == ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.2))
        con.execute(f"USE {LAKE}")
    except ExtensionError as exc:
        con.close()
        raise StorageError(str(exc)) from None
    except duckdb.Error as exc:
        con.close()
        raise StorageError(
            f"cannot attach the DuckLake at storage.catalog {redact(settings.catalog)!r}: {_first_line(exc)}"
        ) from None
    finally:
        loader.close()
    return con


def _create_schema(con: duckdb.DuckDBPyConnection) -> int:
    """Create the lake's tables, or bring an older lake's up to `CURRENT_VERSION`; returns the version it had
    (0 for a new lake)."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR NOT NULL, value VARCHAR)")
        row = con.execute(f"SELECT max(value::INTEGER) FROM {META} WHERE key = 'schema_version'").fetchone()
        version = row[0] if row and row[0] is not None else 0
        if version > CURRENT_VERSION:
            raise StorageError(
                f"the DuckLake has storage schema version {version}, but this Meterway understands versions up to "
                f"{CURRENT_VERSION}: upgrade Meterway to use it"
            )
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
        con.execute(f"CREATE TABLE IF NOT EXISTS {EVENTS} ({columns})")
        for step in range(version + 1, CURRENT_VERSION + 1):
            add_event_columns(con, step)  # a lake made by an older Meterway
        for table in rollups.TABLES:
            con.execute(
                rollups.create_sql(table, primary_key=False).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
            )
        con.execute(AUDIT_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        con.execute(f"CREATE TABLE IF NOT EXISTS {LEASE} (holder VARCHAR NOT NULL, expires TIMESTAMPTZ NOT NULL)")
        if version < CURRENT_VERSION:
            con.execute(f"INSERT INTO {META} VALUES ('schema_version', ?)", [str(CURRENT_VERSION)])
        con.execute("COMMIT")
    except Exception:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    if version and version < CURRENT_VERSION:
        log.info("storage schema of the DuckLake upgraded from version %d to %d", version, CURRENT_VERSION)
    return version


def _seed_lease(con: duckdb.DuckDBPyConnection) -> None:
    """The lease table is never inlined (no flush of inlined data touches it while replicas take the lease) and
    always has a row, so that taking the lease deletes one."""
    con.execute(f"CALL {LAKE}.set_option('data_inlining_row_limit', 0, table_name => '{LEASE}')")
    con.execute(f"INSERT INTO {LEASE} SELECT '', ? WHERE NOT EXISTS (SELECT 1 FROM {LEASE})", [EPOCH])


def _object_store_secret(con: duckdb.DuckDBPyConnection, data_path: str) -> None:
    """Credentials for the data path from the usual environment variables (AWS_* for S3-compatible stores)."""
    env = os.environ
    if not data_path.startswith(("s3://", "r2://")) or not env.get("AWS_ACCESS_KEY_ID"):
        return
    options = {"KEY_ID": env["AWS_ACCESS_KEY_ID"], "SECRET": env.get("AWS_SECRET_ACCESS_KEY", "")}
    if env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        options["REGION"] = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    if env.get("AWS_SESSION_TOKEN"):
        options["SESSION_TOKEN"] = env["AWS_SESSION_TOKEN"]
    endpoint = env.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        options["ENDPOINT"] = re.sub(r"^https?://", "", endpoint)
        options["URL_STYLE"] = "path"
        options["USE_SSL"] = "false" if endpoint.startswith("http://") else "true"
    body = ", ".join(f"{k} {v if v in ('true', 'false') else _literal(v)}" for k, v in options.items())
    con.execute(f"CREATE OR REPLACE SECRET meterway_lake (TYPE s3, {body})")


# What Postgres answers the replica that loses a race to create the same new catalog's tables.
_INIT_RACES = ("duplicate key value violates unique constraint", "already exists")


def _retrying(attempt: Callable[[], T]) -> T:
    """Run a transaction, again on a fresh snapshot each time it loses a conflict with another writer."""
    for n in range(ATTEMPTS):
        try:
            return attempt()
        except duckdb.TransactionException as exc:
            if "conflict" not in str(exc).lower() or n == ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.005, 0.02) * 2**n)
    raise AssertionError("unreachable")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def redact(catalog: str) -> str:
    """The catalog string with any password hidden, for messages and status pages."""
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", catalog, flags=re.IGNORECASE)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
