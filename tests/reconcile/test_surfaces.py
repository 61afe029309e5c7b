"""The surfaces: `GET /admin/reconcile`, the gauges, `meterway reconcile`, and the `reconcile:` settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from gateway.config import load_config
from reconcile import api, cli
from reconcile.metrics import build_reconcile_gauges
from reconcile.service import Reconciler, run_periodically
from reconcile.settings import Scope, SettingsError, parse_settings, settings_from_config
from storage.duckdb_sink import DuckDBSink
from tests.reconcile import world
from tests.reconcile.fake_reporting import OPENAI_KEY, FakeReporting
from tests.reconcile.test_reconcile import ENV, openai_events, serve_openai, settings_for
from tests.reconcile.test_sources import Sleeps
from tests.support.gateway import LiveGateway

REPO = Path(__file__).resolve().parents[2]
RANGE = {"since": "2025-08-01", "until": "2025-08-05"}


@pytest.fixture
def server() -> Iterator[FakeReporting]:
    fake = FakeReporting(page_size=2).start()
    serve_openai(fake)
    yield fake
    fake.stop()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return world.store(tmp_path / "meterway.duckdb", openai_events())


async def test_admin_route_answers_json_csv_and_table_and_sets_the_gauges(
    server: FakeReporting, db: Path, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    gauges = build_reconcile_gauges(registry)
    sink = DuckDBSink(db)
    app = Starlette(routes=api.routes(settings_for(server, tmp_path), sink.query, gauges, env=ENV, sleep=Sleeps()))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            r = await client.get("/admin/reconcile", params={"provider": "openai", **RANGE})
            assert r.status_code == 200 and r.headers[api.VERDICT_HEADER] == "gateway_under"
            body = orjson.loads(r.content)
            assert body["relative_difference"] == "-0.276241" and body["totals"]["provider"]["cost"] == "0.173146"
            assert body["lines"][3]["causes"] == ["model_not_seen_by_gateway"]
            assert "model_not_seen_by_gateway" in body["causes"]
            sample = registry.get_sample_value("meterway_reconcile_relative_difference", {"provider": "openai"})
            assert sample == pytest.approx(-0.276241)
            assert registry.get_sample_value("meterway_reconcile_tolerance", {"provider": "openai"}) == 0.05

            r = await client.get("/admin/reconcile", params={"provider": "openai", "offline": "true", **RANGE},
                                 headers={"accept": "text/csv"})  # fmt: skip
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert r.headers["content-type"].startswith("text/csv") and len(rows) == 8
            assert rows[-1]["period"] == "total" and rows[-1]["rel_cost"] == "-0.276241"

            r = await client.get("/admin/reconcile", params={"provider": "openai", "offline": "1", "format": "table",
                                                             **RANGE})  # fmt: skip
            assert "overall: gateway_under, difference -27.6%" in r.text and "model_not_seen_by_gateway" in r.text

            r = await client.get("/admin/reconcile/snapshots", params={"provider": "openai"})
            assert len(orjson.loads(r.content)["snapshots"]) == 1

            for params, status, param in [
                ({"provider": "openai", "since": "yesterday-ish"}, 400, "since"),
                ({"provider": "gemini"}, 400, "provider"),
                ({"provider": "openai", "by": "tenant"}, 400, "by"),
                ({"provider": "openai", "tolerance": "-1"}, 400, "tolerance"),
                ({"provider": "openai", "colour": "red"}, 400, "colour"),
            ]:
                r = await client.get("/admin/reconcile", params=params)
                assert (r.status_code, orjson.loads(r.content)["error"]["param"]) == (status, param)
            r = await client.get("/admin/reconcile", params={"provider": "anthropic", "offline": "true", **RANGE})
            assert r.status_code == 404 and "run once online first" in r.text
    finally:
        sink.close()


async def test_admin_route_reports_key_problems(server: FakeReporting, db: Path, tmp_path: Path) -> None:
    sink = DuckDBSink(db)
    settings = settings_for(server, tmp_path)
    try:
        wrong = {"OPENAI_ADMIN_KEY": "sk-admin-wrong-0000"}
        for env, status, text in [({}, 503, "OPENAI_ADMIN_KEY is not set"), (wrong, 502, "rejected the admin key")]:
            app = Starlette(routes=api.routes(settings, sink.query, env=env))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
                r = await client.get("/admin/reconcile", params={"provider": "openai", **RANGE})
            assert r.status_code == status and text in r.text and "sk-admin-wrong" not in r.text
    finally:
        sink.close()


def test_a_report_with_nothing_to_compare_sets_nan() -> None:
    registry = CollectorRegistry()
    gauges = build_reconcile_gauges(registry)
    report = type("R", (), {"provider": "anthropic", "relative_difference": None, "tolerance": Decimal("0.1")})()
    gauges.record(report)
    value = registry.get_sample_value("meterway_reconcile_relative_difference", {"provider": "anthropic"})
    assert value is not None and value != value
    assert registry.get_sample_value("meterway_reconcile_last_run_timestamp_seconds", {"provider": "anthropic"})


async def test_periodic_reconciliation_keeps_the_gauge_fresh(server: FakeReporting, db: Path, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    gauges = build_reconcile_gauges(registry)
    sink = DuckDBSink(db)
    env = {"OPENAI_ADMIN_KEY": OPENAI_KEY}  # no Anthropic key: Anthropic is skipped
    reconciler = Reconciler(settings_for(server, tmp_path), sink.query, env=env, sleep=Sleeps())
    task = asyncio.create_task(run_periodically(reconciler, gauges, interval=timedelta(seconds=30)))
    try:
        for _ in range(500):
            if registry.get_sample_value("meterway_reconcile_last_run_timestamp_seconds", {"provider": "openai"}):
                break
            await asyncio.sleep(0.01)
        value = registry.get_sample_value("meterway_reconcile_relative_difference", {"provider": "openai"})
        assert value is not None and value != value  # NaN: nothing reported in the last 7 days of the fake server
        assert registry.get_sample_value("meterway_reconcile_tolerance", {"provider": "anthropic"}) is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sink.close()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="meterway")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["reconcile", *argv])
    code: int = args.handler(args)
    return code


def test_command_line(
    server: FakeReporting, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"path": str(db)}, "pricing": {"book": str(REPO / "pricing" / "book")},
        "providers": {"openai": {"kind": "openai", "base_url": "https://api.openai.com/v1"}},
    }))  # fmt: skip
    monkeypatch.setattr(cli, "settings_from_config", lambda _config: settings_for(server, tmp_path))
    monkeypatch.setenv("OPENAI_ADMIN_KEY", OPENAI_KEY)
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY", raising=False)
    common = ["--provider", "openai", "--since", RANGE["since"], "--until", RANGE["until"], "--config", str(config)]

    assert run_cli(*common, "--format", "json") == 0
    assert orjson.loads(capsys.readouterr().out)["relative_difference"] == "-0.276241"

    assert run_cli(*common, "--offline") == 0
    out = capsys.readouterr().out
    assert "overall: gateway_under, difference -27.6%" in out and "provider_only_day" in out

    assert run_cli(*common, "--offline", "--format", "csv", "--by", "project", "--tolerance", "0.5") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["scope"] for r in rows[:-1]} == {"(unmapped)", "proj_gw", "proj_other"}  # no project configured

    assert run_cli(*common, "--offline", "--check") == 1
    assert run_cli("--list-snapshots", "--provider", "openai", "--config", str(config)) == 0
    assert capsys.readouterr().out.count('"id"') == 1

    assert run_cli("--provider", "openai", "--since", "soon", "--config", str(config)) == 2
    assert "error: --since:" in capsys.readouterr().err
    assert run_cli("--provider", "anthropic", "--since", "2025-08-01", "--config", str(config)) == 2
    assert "ANTHROPIC_ADMIN_KEY is not set" in capsys.readouterr().err


def test_command_line_through_a_gateway_sends_its_admin_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MW_RECONCILE_TEST_KEY", "the-admin-key")
    gw = LiveGateway.from_doc(tmp_path, {"auth": {"admin_key_env": "MW_RECONCILE_TEST_KEY"}}).start()
    try:
        common = ["--provider", "openai", "--url", gw.url, "--config", str(tmp_path / "config.yaml")]
        monkeypatch.setenv("MW_RECONCILE_TEST_KEY", "not-the-key")
        assert run_cli(*common) == 2
        assert capsys.readouterr().err.strip() == f"error: {gw.url} refused the admin key in MW_RECONCILE_TEST_KEY"
        monkeypatch.setenv("MW_RECONCILE_TEST_KEY", "the-admin-key")
        assert run_cli(*common) == 2  # past the gateway's guard: the gateway has no OpenAI admin key to ask with
        err = capsys.readouterr().err
        assert "refused the admin key" not in err and "OPENAI_ADMIN_KEY" in err, err
    finally:
        gw.stop()


def test_settings_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data" / "m.duckdb")},
        "providers": {"openai": {"kind": "openai", "base_url": "https://api.openai.com/v1"},
                      "openai-eu": {"kind": "openai", "base_url": "https://api.openai.com/v1"},
                      "groq": {"kind": "openai", "base_url": "https://api.groq.com/openai/v1"}},
    }))  # fmt: skip
    settings = settings_from_config(load_config(config, env={}))
    assert sorted(settings.providers["openai"].gateway_providers) == ["openai", "openai-eu"]
    assert list(settings.providers["anthropic"].gateway_providers) == ["anthropic"]
    assert settings.snapshot_dir == tmp_path / "data" / "reconcile"
    assert settings.providers["openai"].admin_key_env == "OPENAI_ADMIN_KEY" and settings.tolerance == Decimal("0.05")

    section = {"tolerance": "0.02", "bucket_width": "1h", "base_delay": 0.1,
               "openai": {"base_url": "http://127.0.0.1:9", "admin_key_env": "MY_OPENAI_ADMIN",
                          "gateway_providers": {"openai": {"project": "proj_1", "api_key": "key_1"}}}}  # fmt: skip
    parsed = parse_settings(section)
    assert (parsed.tolerance, parsed.bucket_width, parsed.client.base_delay) == (Decimal("0.02"), "1h", 0.1)
    assert parsed.providers["openai"].gateway_providers == {"openai": Scope("proj_1", "key_1")}

    with pytest.raises(SettingsError) as caught:
        parse_settings({"tolerance": "lots", "bucket_width": "1w", "anthropic": {"admin_key": "sk-x"}, "extra": 1})
    problems = caught.value.problems
    assert any(p.startswith("reconcile.tolerance:") for p in problems)
    assert any(p.startswith("reconcile.bucket_width:") for p in problems)
    assert any(p.startswith("reconcile.anthropic.admin_key: unknown key") for p in problems)
    assert any(p.startswith("reconcile.extra: unknown key") for p in problems)
