"""Governance sections of config.yaml: parsed values and one clear line per problem."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Any

import yaml

from governance.config import GovernanceConfig, parse_governance
from governance.scope import RequestScope, Selector

SPEC_EXAMPLE = """
auth:
  admin_key_env: MW_ADMIN_KEY
  require_keys: true
tenants:
  acme: {discount_percent: 20}
budgets:
  - {name: acme-daily, tenant: acme, period: day, limit: "50", currency: USD, soft: [0.5, 0.8], hard: true}
  - {name: all-monthly, period: month, limit: "20000", currency: CNY, soft: [0.8, 1.0], hard: false}
rate_limits:
  - {tenant: acme, rpm: 600, tpm: 200000}
notifications:
  - {kind: webhook, url: "https://ops.example/hook", secret_env: MW_HOOK_SECRET}
  - {kind: slack, url: "https://hooks.slack.example/T/B/x"}
"""


def parse(text: str, env: dict[str, str] | None = None) -> tuple[GovernanceConfig, list[str]]:
    problems: list[str] = []
    raw: dict[str, Any] = yaml.safe_load(text) or {}
    return parse_governance(raw, env or {}, problems), problems


def test_the_spec_example_parses() -> None:
    cfg, problems = parse(SPEC_EXAMPLE, {"MW_ADMIN_KEY": "admin-secret", "MW_HOOK_SECRET": "hook-secret"})
    assert problems == []
    assert cfg.auth.require_keys and cfg.auth.admin_key == "admin-secret"
    assert "admin-secret" not in repr(cfg.auth)
    assert cfg.tenants == ("acme",)
    daily, monthly = cfg.budgets
    assert (daily.name, daily.period, daily.limit, daily.currency, daily.hard) == (
        "acme-daily", "day", Decimal(50), "USD", True
    )  # fmt: skip
    assert daily.soft == (Decimal("0.5"), Decimal("0.8")) and daily.selector == Selector(tenant="acme")
    assert monthly.selector == Selector() and not monthly.hard and monthly.currency == "CNY"
    (limit,) = cfg.rate_limits
    assert (limit.rpm, limit.tpm, limit.selector.tenant, limit.name) == (600, 200000, "acme", "rate_limits[0]")
    hook, slack = cfg.notifications
    assert (hook.kind, hook.secret, hook.name) == ("webhook", "hook-secret", "webhook-0")
    assert "hook-secret" not in repr(hook)
    assert (slack.kind, slack.secret, slack.name) == ("slack", None, "slack-1")


def test_defaults_without_any_section() -> None:
    cfg, problems = parse("server: {port: 1}")
    assert problems == [] and cfg == GovernanceConfig()
    assert cfg.alerts.anomaly.baseline_days == 7 and cfg.alerts.weekly_report.weekday == 0


def test_alerts_section() -> None:
    cfg, problems = parse(
        "alerts:\n"
        "  anomaly: {z_score: 2.5, multiplier: 4, min_spend: '0.5', min_tokens: 1000, interval_seconds: 60}\n"
        "  daily_report: {at: '07:30'}\n"
        "  weekly_report: {day: Friday, at: '17:00', enabled: false}\n"
    )
    assert problems == []
    anomaly = cfg.alerts.anomaly
    assert (anomaly.z_score, anomaly.multiplier, anomaly.min_spend) == (Decimal("2.5"), Decimal(4), Decimal("0.5"))
    assert (anomaly.min_tokens, anomaly.interval_seconds, anomaly.baseline_days) == (1000, 60, 7)
    assert cfg.alerts.daily_report.at == time(7, 30)
    weekly = cfg.alerts.weekly_report
    assert (weekly.weekday, weekly.at, weekly.enabled) == (4, time(17, 0), False)


def test_every_problem_names_its_key() -> None:
    _, problems = parse(
        """
auth: {admin_key_env: MW_ADMIN_KEY, require_keys: yes-please}
tenants: {acme: {discount_percent: 5, colour: red}}
budgets:
  - {name: a, period: year, limit: "50", currency: USD}
  - {name: a, period: day, limit: "-3", currency: usd, soft: [0.5, 0, 0.5], hard: 1}
  - {period: day, limit: "1", currency: USD, tenat: acme}
  - just-a-string
rate_limits:
  - {tenant: acme}
  - {rpm: 0, tpm: 10, per: [colour]}
notifications:
  - {kind: email, url: "https://x"}
  - {kind: webhook, url: "ftp://x", secret_env: NOPE, events: [budget.*, nothing.here]}
  - {kind: slack}
alerts:
  anomaly: {z_score: -1, baseline_days: 7, min_baseline_days: 9}
  daily_report: {at: "25:00"}
  weekly_report: {day: someday}
""",
        {},
    )
    text = "\n".join(problems)
    for expected in (
        "auth.admin_key_env: environment variable MW_ADMIN_KEY is not set",
        "auth.require_keys: expected true or false, got 'yes-please'",
        "tenants.acme.colour: unknown key",
        "budgets[0].period: expected day, week or month, got 'year'",
        "budgets[1].name: duplicate name 'a'",
        "budgets[1].limit: expected a positive decimal amount",
        "budgets[1].currency: expected a 3-letter currency code like USD, got 'usd'",
        "budgets[1].soft[1]: expected a fraction of the limit above 0",
        "budgets[1].soft[2]: duplicate threshold 0.5",
        "budgets[1].hard: expected true or false, got 1",
        "budgets[2].name: required",
        "budgets[2].tenat: unknown key",
        "budgets[3]: expected a mapping, got str",
        "rate_limits[0].rpm: a rate limit needs rpm",
        "rate_limits[1].rpm: expected an integer from 1",
        "rate_limits[1].per: expected some of tenant, key, feature, provider, model",
        "notifications[0].kind: expected webhook, slack or log, got 'email'",
        "notifications[1].url: expected an http(s) URL, got 'ftp://x'",
        "notifications[1].secret_env: environment variable NOPE is not set",
        "notifications[1].events[1]: matches no event kind",
        "notifications[2].url: required for kind slack",
        "alerts.anomaly.z_score: expected a positive decimal amount",
        "alerts.anomaly.min_baseline_days: expected at most baseline_days (7), got 9",
        "alerts.daily_report.at: expected a UTC time of day like \"08:00\", got '25:00'",
        "alerts.weekly_report.day: expected a day of the week",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"
    assert all("\n" not in p for p in problems)
    assert not any("budget.*" in p for p in problems)


def test_sections_of_the_wrong_type() -> None:
    _, problems = parse("budgets: {a: 1}\nauth: [1]\nnotifications: 3\n")
    assert "budgets: expected a list of mappings, got dict" in problems
    assert "auth: expected a mapping, got list" in problems
    assert "notifications: expected a list of mappings, got int" in problems


def test_selector_matching() -> None:
    scope = RequestScope(tenant="acme", key="key_1", feature="search", provider="openai", model="gpt-4o-mini")
    assert Selector().matches(scope)
    assert Selector(tenant="acme", model="gpt-4o*").matches(scope)
    assert not Selector(tenant="other").matches(scope)
    assert not Selector(model="gpt-5*").matches(scope)
    assert not Selector(feature="chat").matches(RequestScope(tenant="acme"))
    assert Selector(tenant="acme", model="gpt-4o*").describe() == "tenant acme, model gpt-4o*"
    assert Selector().describe() == "everything"


def test_notification_event_filter() -> None:
    cfg, problems = parse("notifications: [{kind: log, events: ['budget.*', anomaly]}, {kind: log, name: all}]")
    assert problems == []
    filtered, everything = cfg.notifications
    assert filtered.wants("budget.threshold") and filtered.wants("anomaly") and not filtered.wants("report.daily")
    assert everything.wants("report.weekly") and everything.name == "all"
