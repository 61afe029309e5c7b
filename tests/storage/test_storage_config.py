"""The storage keys of config.yaml: parsed, and rejected with one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def test_storage_keys_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {path: e.duckdb, fsync: always, fsync_interval_ms: 50, max_pending_events: 10, "
                   "retention_days: 400}\n")  # fmt: skip
    storage = load_config(cfg, env={}).storage
    assert (storage.fsync, storage.fsync_interval_ms, storage.max_pending_events, storage.retention_days) == (
        "always", 50, 10, 400,
    )  # fmt: skip
    assert storage.path == tmp_path / "e.duckdb"


def test_bad_storage_keys_are_one_line_each(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("storage: {fsync: sometimes, retention_days: -3, max_pending_events: lots, fsync_interval: 5}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    problems = [p.split(": ", 1)[1] for p in err.value.problems]
    assert sorted(problems) == sorted([
        "storage.fsync_interval: unknown key (expected one of backend, flush_interval_ms, fsync, fsync_interval_ms, "
        "journal_dir, max_pending_events, path, retention_days)",
        "storage.fsync: expected 'interval', 'always' or 'never', got 'sometimes'",
        "storage.max_pending_events: expected an integer from 1 to 2147483648, got 'lots'",
        "storage.retention_days: expected an integer from 1 to 100000, got -3",
    ])  # fmt: skip
