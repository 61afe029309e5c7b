"""The storage keys of config.yaml: parsed, and rejected with one clear line per problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config
from storage.runtime import event_writer
from storage.sinks import open_sink
from tests.support.gateway import REPO


def test_storage_keys_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {path: e.duckdb, fsync: always, fsync_interval_ms: 50, max_pending_events: 10, "
                   "retention_days: 400}\n")  # fmt: skip
    storage = load_config(cfg, env={}).storage
    assert (storage.fsync, storage.fsync_interval_ms, storage.max_pending_events, storage.retention_days) == (
        "always", 50, 10, 400,
    )  # fmt: skip
    assert storage.path == tmp_path / "e.duckdb"


def test_defaults_load_each_second_sync_five_times_a_second_checkpoint_each_load_on_one_duckdb_thread(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {path: e.duckdb}\n")
    storage = load_config(cfg, env={}).storage
    writer = event_writer(None, storage)
    assert (writer.flush_interval, writer.fsync_interval) == (1.0, 0.2)
    sink = open_sink(storage)
    try:
        assert sink.query("SELECT current_setting('threads')") == [(1,)]
        assert sink.query("SELECT current_setting('memory_limit')") == [("122.0 MiB",)]  # 128 MB
        assert sink.idle_checkpoint == 0  # after every load
    finally:
        sink.close()
    cfg.write_text(
        "storage: {path: e.duckdb, flush_interval_ms: 50, threads: 2, memory_limit: 1GB, checkpoint: quiet}\n"
    )
    storage = load_config(cfg, env={}).storage
    assert event_writer(None, storage).fsync_interval == 0.05
    sink = open_sink(storage)
    try:
        assert sink.query("SELECT current_setting('threads')") == [(2,)]
        assert sink.query("SELECT current_setting('memory_limit')") == [("953.6 MiB",)]  # 1 GB
        assert sink.idle_checkpoint == 10
    finally:
        sink.close()


def test_bad_storage_keys_are_one_line_each(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {fsync: sometimes, retention_days: -3, max_pending_events: lots, fsync_interval: 5, "
                   "memory_limit: lots, checkpoint: never}\n")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    problems = [p.split(": ", 1)[1] for p in err.value.problems]
    assert sorted(problems) == sorted([
        "storage.fsync_interval: unknown key (expected one of backend, catalog, checkpoint, compaction_interval_s, "
        "data_path, flush_interval_ms, fsync, fsync_interval_ms, journal_dir, loader, max_pending_events, "
        "memory_limit, path, retention_days, threads, work_memory_limit)",
        "storage.memory_limit: expected a size such as '256MB' or '2GB', got 'lots'",
        "storage.fsync: expected 'interval', 'always' or 'never', got 'sometimes'",
        "storage.checkpoint: expected 'load' or 'quiet', got 'never'",
        "storage.max_pending_events: expected an integer from 1 to 2147483648, got 'lots'",
        "storage.retention_days: expected an integer from 1 to 100000, got -3",
    ])  # fmt: skip


def test_ducklake_keys_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {backend: ducklake, catalog: 'postgres:dbname=mw host=db password=${PGPASSWORD}', "
                   "data_path: lake, compaction_interval_s: 60, loader: process}\n")  # fmt: skip
    storage = load_config(cfg, env={"PGPASSWORD": "s3cret"}).storage
    assert storage.catalog == "postgres:dbname=mw host=db password=s3cret"
    assert storage.data_path == f"{tmp_path / 'lake'}/"
    assert (storage.compaction_interval_s, storage.loader) == (60, "process")
    cfg.write_text("storage: {backend: ducklake, catalog: 'ducklake:postgres:dbname=mw', data_path: 's3://b/lake/'}\n")
    storage = load_config(cfg, env={}).storage
    assert (storage.catalog, storage.data_path, storage.loader) == ("postgres:dbname=mw", "s3://b/lake/", None)


@pytest.mark.parametrize(
    ("storage", "problem"),
    [
        ("{backend: ducklake, data_path: lake}", "storage.catalog: required for ducklake, e.g. "
         '"postgres:dbname=meterway host=db user=meterway"'),
        ("{backend: ducklake, catalog: 'sqlite:x.db', data_path: lake}",
         "storage.catalog: expected a Postgres catalog starting with 'postgres:', got 'sqlite:x.db'"),
        ("{backend: ducklake, catalog: 'postgres:dbname=mw'}",
         "storage.data_path: required for ducklake: a folder (data/lake/) or an s3://, gs://, r2:// URL"),
        ("{backend: ducklake, catalog: 'postgres:dbname=mw', data_path: 'ftp://x/'}",
         "storage.data_path: expected a folder or an s3://, gs:// or r2:// URL, got 'ftp://x/'"),
        ("{catalog: 'postgres:dbname=mw'}", "storage.catalog: only used with storage.backend: ducklake"),
        ("{loader: thread}", "storage.loader: expected 'inline' or 'process', got 'thread'"),
        ("{compaction_interval_s: 0}", "storage.compaction_interval_s: expected an integer from 1 to 604800, got 0"),
        ("{memory_limit: 32MB}",
         "storage.memory_limit: at least 64MB (a checkpoint of the event table needs that much), got '32MB'"),
        ("{memory_limit: 512MB, work_memory_limit: 256MB}",
         "storage.work_memory_limit: at least storage.memory_limit (512MB), got '256MB'"),
        ("{memory_limit: 1GB, work_memory_limit: lots}",
         "storage.work_memory_limit: expected a size such as '256MB' or '2GB', got 'lots'"),
    ],
)  # fmt: skip
def test_bad_storage_values_are_one_line_each(tmp_path: Path, storage: str, problem: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {storage}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [problem]


@pytest.mark.parametrize(
    ("storage", "limits"),
    [
        ("{}", ("128MB", "256MB")),
        ("{memory_limit: 64MiB, work_memory_limit: 1gb}", ("64MIB", "1GB")),
        ("{memory_limit: 1GB}", ("1GB", "1GB")),  # a work limit below the steady one would shrink it
    ],
)
def test_memory_limits_parse_and_the_work_limit_is_at_least_the_steady_one(
    tmp_path: Path, storage: str, limits: tuple[str, str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {storage}\n")
    parsed = load_config(cfg, env={}).storage
    assert (parsed.memory_limit, parsed.work_memory_limit) == limits


DECAY = """
import ctypes, sys
import storage.duckdb_sink  # how every path reaches DuckDB: through the storage package
import duckdb
lib = ctypes.CDLL(sys.modules["_duckdb"].__file__)
value, size = ctypes.c_ssize_t(-2), ctypes.c_size_t(ctypes.sizeof(ctypes.c_ssize_t))
assert lib.duckdb_je_mallctl(b"opt.dirty_decay_ms", ctypes.byref(value), ctypes.byref(size), None, 0) == 0
print(value.value)
"""


@pytest.mark.parametrize(("env", "decay"), [({}, 0), ({"DUCKDB_JE_MALLOC_CONF": "dirty_decay_ms:500"}, 500)])
def test_duckdb_gives_freed_memory_back_at_once_unless_the_environment_says_otherwise(
    env: dict[str, str], decay: int
) -> None:
    """Loads touch tens of MiB for a moment; with jemalloc's default decay those pages stayed resident."""
    base = {k: v for k, v in os.environ.items() if k != "DUCKDB_JE_MALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", DECAY], env={**base, **env}, cwd=REPO, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert int(out.stdout) == decay


@pytest.mark.parametrize(
    ("storage", "problem"),
    [
        ("{path: notadir/e.duckdb}", "storage.path {tmp}/notadir/e.duckdb: {tmp}/notadir is a file, not a folder"),
        ("{path: notadir/sub/e.duckdb}",
         "storage.path {tmp}/notadir/sub/e.duckdb: cannot create the folder {tmp}/notadir/sub: "
         "{tmp}/notadir is a file, not a folder"),
        ("{path: data/e.duckdb, journal_dir: notadir}",
         "the event journal (storage.journal_dir): {tmp}/notadir is a file, not a folder"),
    ],
)  # fmt: skip
def test_serve_names_a_storage_path_that_runs_through_a_file(tmp_path: Path, storage: str, problem: str) -> None:
    (tmp_path / "notadir").write_text("a file\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {storage}\n")
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", "0"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert (out.returncode, out.stderr.splitlines()) == (2, ["storage error: " + problem.format(tmp=tmp_path)])


def test_serve_with_workers_and_the_store_commands_name_a_storage_path_through_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notadir").write_text("a file\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {path: notadir/e.duckdb}\n")
    problem = f"storage.path {tmp_path}/notadir/e.duckdb: {tmp_path}/notadir is a file, not a folder"
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", "0", "--workers", "2"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.splitlines()[-1].endswith(f" ERROR meterway: storage error: {problem}")
    assert "Traceback" not in out.stderr
    assert main(["report", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {problem}"]
    (tmp_path / "usage.jsonl").write_text("{}\n")
    assert main(["ingest", "--config", str(cfg), str(tmp_path / "usage.jsonl")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {problem}"]
