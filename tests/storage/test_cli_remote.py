"""While a gateway holds the DuckDB file, the storage commands go through its admin API instead."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest
import yaml

from gateway.cli import main
from tests.storage.helpers import BOOK, write_book
from tests.support.gateway import REPO, write_config
from tests.support.process import GatewayProcess, free_port

KEY = "remote-admin-key"
RECORDS = [
    {"tenant_id": "acme", "provider": "acme", "model": "m1", "input_tokens": 1000, "output_tokens": 500,
     "ts": "2025-03-10T10:30:00Z"},
    {"tenant_id": "globex", "provider": "acme", "model": "m2", "input_tokens": 2000, "output_tokens": 100,
     "ts": "2025-03-11T08:00:00Z"},
]  # fmt: skip


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("remote")
    port = free_port()
    cfg = write_config(tmp, {
        "server": {"port": port}, "auth": {"admin_key_env": "MW_TEST_ADMIN_KEY"},
        "storage": {"path": str(tmp / "events.duckdb"), "flush_interval_ms": 20},
        "pricing": {"book": str(write_book(tmp / "book"))},
    })  # fmt: skip
    proc = GatewayProcess(["serve", "--config", str(cfg)], cwd=REPO, env={"MW_TEST_ADMIN_KEY": KEY}, log=tmp / "gw.log")
    proc.start(f"http://127.0.0.1:{port}/healthz")
    yield cfg
    proc.kill()


@pytest.fixture(autouse=True)
def admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TEST_ADMIN_KEY", KEY)


def report(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["report", "--config", str(cfg), "--format", "json", *args]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_commands_go_through_the_running_gateway(gateway: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usage = gateway.parent / "usage.jsonl"
    usage.write_bytes(b"\n".join([orjson.dumps(RECORDS[0]), b"[1, 2]", orjson.dumps(RECORDS[1])]) + b"\n")
    assert main(["ingest", str(usage), "--config", str(gateway)]) == 1
    out, err = capsys.readouterr()
    assert "ingested 2 of 3 records" in out and "into http://127.0.0.1:" in out
    assert err.splitlines()[0] == "line 2: expected a JSON object, got list"

    deadline = time.monotonic() + 10  # the gateway loads its journal every 20 ms
    while len(rows := report(gateway, capsys, "--by", "tenant")["data"]) < 2:  # type: ignore[arg-type]
        assert time.monotonic() < deadline
    assert [(r["tenant"], r["requests"], r["cost_reporting"]) for r in rows] == [  # type: ignore[index]
        ("globex", 1, "0.00308"),
        ("acme", 1, "0.002"),
    ]

    assert main(["bill", "--config", str(gateway), "--month", "2025-03", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("globex,1,0,0,2000,")
    assert main(["bill", "--config", str(gateway), "--month", "2025-03"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "total: 0.00508 USD"

    out_file = gateway.parent / "export.csv"
    assert main(["export", "--config", str(gateway), "--out", str(out_file)]) == 0
    assert len(out_file.read_text().splitlines()) == 3 and "exported 2 events" in capsys.readouterr().err

    write_book(gateway.parent / "book", BOOK.replace("output: 2}", "output: 4}"))
    assert main(["reprice", "--config", str(gateway), "--since", "2025-01-01"]) == 0
    assert "2 events examined, changed 1" in capsys.readouterr().out
    assert report(gateway, capsys, "--tenant", "acme")["data"][0]["cost_reporting"] == "0.003"  # type: ignore[index]


def test_without_the_admin_key_the_command_says_what_is_missing(
    gateway: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MW_TEST_ADMIN_KEY")
    with pytest.raises(SystemExit) as info:  # a configured admin key that is not set is a config error
        main(["report", "--config", str(gateway)])
    assert info.value.code == 2
    assert "auth.admin_key_env: environment variable MW_TEST_ADMIN_KEY is not set" in capsys.readouterr().err


def test_url_alone_asks_the_gateway_with_the_key_in_mw_admin_key(
    gateway: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """From a directory with no config file, `--url` is enough; the key comes from MW_ADMIN_KEY."""
    url = f"http://127.0.0.1:{yaml.safe_load(gateway.read_text())['server']['port']}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MW_ADMIN_KEY", raising=False)
    assert main(["bill", "--url", url, "--month", "2025-03"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {url} needs the admin key: set MW_ADMIN_KEY"
    monkeypatch.setenv("MW_ADMIN_KEY", "not-the-key")
    assert main(["bill", "--url", url, "--month", "2025-03"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {url} refused the admin key in MW_ADMIN_KEY"
    monkeypatch.setenv("MW_ADMIN_KEY", KEY)
    assert main(["bill", "--url", url, "--month", "2025-03", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["month"] == "2025-03"
    with pytest.raises(SystemExit) as info:  # a config named on the command line must exist
        main(["bill", "--url", url, "--config", "elsewhere.yaml"])
    assert info.value.code == 2


def test_a_second_gateway_on_the_same_file_is_refused_in_one_line(
    gateway: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(gateway), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("storage error: ") and "is in use by another process (PID" in err
    with pytest.raises(duckdb.IOException):
        duckdb.connect(str(gateway.parent / "events.duckdb"), read_only=True)
