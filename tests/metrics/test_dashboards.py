"""The Grafana dashboards and provisioning hold together: ids, datasources, variables, units, layout."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.metrics.artifacts import (
    BUILTINS,
    DASHBOARDS,
    DATASOURCE_UID,
    GRAFANA,
    dashboards,
    panels,
    variables,
    variables_used,
)

DASHBOARD_FILES = sorted(dashboards())
EXPECTED = {"overview", "tenants", "features", "tokens", "latency", "health", "reconcile"}
GRAFANA_BUILTINS = {*BUILTINS, "__all", "__range_s", "__range_ms", "__interval_ms", "__from", "__to", "__dashboard"}


def test_the_six_dashboards_exist_with_unique_uids() -> None:
    assert {f.removeprefix("meterway-").removesuffix(".json") for f in DASHBOARD_FILES} == EXPECTED
    uids = [d["uid"] for d in dashboards().values()]
    titles = [d["title"] for d in dashboards().values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)


def test_provisioning_points_at_the_dashboards_and_the_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/meterway.yml").read_text())["datasources"]
    assert [(d["uid"], d["type"]) for d in ds] == [(DATASOURCE_UID, "prometheus")]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/meterway.yml").read_text())["providers"]
    compose = yaml.safe_load((DASHBOARDS / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_panel_ids_are_unique(file: str) -> None:
    ids = [p["id"] for p in panels(dashboards()[file])]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {file}"


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_every_datasource_reference_resolves(file: str) -> None:
    dash = dashboards()[file]
    var = variables(dash)["datasource"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    assert var["current"]["value"] == DATASOURCE_UID
    refs = [(p["title"], p["datasource"]) for p in panels(dash) if p["type"] != "row"]
    refs += [(p["title"], t["datasource"]) for p in panels(dash) for t in p.get("targets", [])]
    refs += [(f"${n}", v["datasource"]) for n, v in variables(dash).items() if v["type"] == "query"]
    for where, ref in refs:
        assert ref["type"] == "prometheus", where
        assert ref["uid"] in ("${datasource}", DATASOURCE_UID), f"{where}: unknown datasource {ref['uid']}"


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_every_variable_used_is_defined(file: str) -> None:
    dash = dashboards()[file]
    defined = set(variables(dash))
    used = variables_used(json.dumps(dash["panels"])) | variables_used(json.dumps(dash["templating"]))
    assert used - defined - GRAFANA_BUILTINS == set(), f"{file} uses undefined variables"


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_targets_have_unique_ref_ids_and_an_expression(file: str) -> None:
    for panel in panels(dashboards()[file]):
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["type"] == "row" or refs, f"{panel['title']}: no queries"
        assert all(t["expr"].strip() for t in panel.get("targets", [])), panel["title"]


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_money_is_shown_in_a_currency_unit(file: str) -> None:
    for panel in panels(dashboards()[file]):
        exprs = " ".join(t["expr"] for t in panel.get("targets", []))
        if "meterway_cost" in exprs:
            unit = panel["fieldConfig"]["defaults"]["unit"]
            assert unit.startswith("currency"), f"{panel['title']}: unit {unit}"


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_panels_fit_the_grid_without_overlapping(file: str) -> None:
    boxes: list[tuple[str, dict[str, Any]]] = [(p["title"], p["gridPos"]) for p in dashboards()[file]["panels"]]
    for title, g in boxes:
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, title
    for i, (a_title, a) in enumerate(boxes):
        for b_title, b in boxes[i + 1 :]:
            apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"]
            assert apart or b["y"] + b["h"] <= a["y"], f"{a_title!r} overlaps {b_title!r}"
