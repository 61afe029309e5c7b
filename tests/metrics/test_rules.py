"""The Prometheus rules: promtool checks them and runs their unit tests, and every alert is covered.

Needs promtool from Debian's `prometheus` package (`.ci/run` installs it); without it these fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.metrics.artifacts import DASHBOARDS, PROMETHEUS, RULE_FILES, RULE_TESTS, rules


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(path).exists(), "promtool is missing: install Debian's prometheus package (.ci/run does)"
    return path


def run(*args: str | Path) -> str:
    done = subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    assert RULE_FILES
    out = run("check", "rules", *RULE_FILES)
    assert out.count("SUCCESS") == len(RULE_FILES)
    run("check", "config", PROMETHEUS / "prometheus.yml")


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS
    out = run("test", "rules", *RULE_TESTS)
    assert out.count("SUCCESS") == len(RULE_TESTS) and "FAILED" not in out


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert {(path.parent / f).resolve() for f in doc["rule_files"]} == {p.resolve() for p in RULE_FILES}
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


def test_every_alert_is_documented() -> None:
    for rule in rules():
        if "alert" in rule:
            notes = rule.get("annotations", {})
            assert {"summary", "description", "runbook"} <= set(notes), rule["alert"]
            assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]


def test_compose_brings_up_gateway_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((DASHBOARDS / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"gateway", "prometheus", "grafana"}
    build = services["gateway"]["build"]
    assert (DASHBOARDS / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DASHBOARDS / source).exists(), f"{name}: {source} does not exist"
    prom = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["gateway:8080"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
