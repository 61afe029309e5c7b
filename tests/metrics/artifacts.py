"""Reading the shipped dashboards and rules for the tests: every PromQL expression with what it must return.

A `Query` is one expression to evaluate against a real Prometheus plus the labels every returned
series must carry: a dashboard target's `{{label}}` legend placeholders, a recording rule's level
(`provider_model:...` keeps provider and model), an alert's `$labels.x` annotation references.
Grafana variables are replaced by concrete values (`substitute`). Alert conditions are evaluated
with `bool` added to every comparison (`with_bool`), so an alert that is rightly quiet still shows
that its expression selects series with the labels its annotations use; whether each threshold
fires is proven by the promtool unit tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
GRAFANA = DASHBOARDS / "grafana"
PROMETHEUS = DASHBOARDS / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
DATASOURCE_UID = "meterway-prometheus"

# Concrete values for the e2e run: Grafana's built-ins sized for a 1 s scrape interval, and the
# tenant the test traffic keeps by name. Multi-value variables use their `allValue`.
BUILTINS = {"__rate_interval": "10s", "__interval": "5s", "__range": "1m"}
SINGLE_VALUES = {"tenant": "acme"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LABEL_REF = re.compile(r"\$labels\.(\w+)")
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    labels: frozenset[str]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def variables_used(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def substitute(text: str, dashboard: dict[str, Any]) -> str:
    defined = variables(dashboard)

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in BUILTINS:
            return BUILTINS[name]
        var = defined[name]
        return str(var["allValue"]) if var.get("includeAll") else SINGLE_VALUES[name]

    return _VARIABLE.sub(value, text)


def dashboard_queries() -> list[Query]:
    out = []
    for file, dash in dashboards().items():
        for panel in panels(dash):
            for target in panel.get("targets", []):
                where = f"{file} / {panel['title']} / {target['refId']}"
                labels = frozenset(_LEGEND.findall(target.get("legendFormat", "")))
                out.append(Query(where, substitute(target["expr"], dash), labels))
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """(where, series selector, label) of every `label_values(...)` variable."""
    out = []
    for file, dash in dashboards().items():
        for name, var in variables(dash).items():
            if var["type"] != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = _LABEL_VALUES.fullmatch(query)
            assert m, f"{file}: variable {name}: only label_values(selector, label) is supported"
            out.append((f"{file} / ${name}", substitute(m.group(1), dash), m.group(2)))
    return out


def rules() -> list[dict[str, Any]]:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def recording_queries() -> list[Query]:
    out = []
    for rule in rules():
        if "record" in rule:
            level = frozenset(rule["record"].split(":")[0].split("_"))
            out.append(Query(f"record {rule['record']} (expr)", rule["expr"], level))
            out.append(Query(f"record {rule['record']} (series)", rule["record"], level))
    return out


def alert_queries() -> list[Query]:
    out = []
    for rule in rules():
        if "alert" in rule:
            labels = frozenset(_LABEL_REF.findall(json.dumps(rule.get("annotations", {}))))
            out.append(Query(f"alert {rule['alert']}", with_bool(rule["expr"]), labels))
    return out


def with_bool(expr: str) -> str:
    """`expr` with `bool` after every comparison operator outside label matchers and strings."""
    out: list[str] = []
    i, depth, quote = 0, 0, ""
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(expr[i : i + 2] if ch == "\\" else ch)
            i += 2 if ch == "\\" else 1
            quote = "" if ch == quote else quote
            continue
        op = next((op for op in _COMPARISONS if expr.startswith(op, i)), None) if depth == 0 else None
        if op is not None:
            already = expr[i + len(op) :].lstrip().startswith("bool")
            out.append(op if already else f"{op} bool")
            i += len(op)
            continue
        if ch in "\"'`":
            quote = ch
        depth += {"{": 1, "}": -1}.get(ch, 0)
        out.append(ch)
        i += 1
    return "".join(out)
