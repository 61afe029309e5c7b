"""The governance sections of config.yaml: auth, tenants, budgets, rate_limits, notifications, alerts.

`parse_governance(raw, env, problems)` reads them from the whole interpolated document, appends one
line per problem naming the key (`budgets[0].period: expected day, week or month, got 'year'`) and
returns a `GovernanceConfig` holding what it could read; callers reject the config when `problems`
is not empty. Secrets named by `*_env` keys are resolved from `env` here and never echoed back.

    auth:          {admin_key_env: MW_ADMIN_KEY, require_keys: true}
    tenants:       {acme: {discount_percent: 20}}      # the discount itself is validated with pricing
    budgets:       [{name, tenant|key|feature|provider|model, period: day|week|month, limit: "50",
                     currency: USD, soft: [0.5, 0.8], hard: true}]
    rate_limits:   [{name, tenant|key|feature|provider|model, per: [key], rpm: 600, tpm: 200000}]
    notifications: [{name, kind: webhook|slack|log, url, secret_env, events: ["budget.*", anomaly]}]
    alerts:
      anomaly:       {enabled, z_score: 3, multiplier: 3, min_spend: "1", min_tokens: 10000,
                      baseline_days: 7, min_baseline_days: 3, interval_seconds: 300}
      daily_report:  {enabled, at: "08:00"}                 # UTC
      weekly_report: {enabled, day: monday, at: "08:00"}    # UTC
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from governance.config_reader import Reader, items_of, mapping, to_decimal
from governance.scope import FIELDS, Selector

PERIODS = ("day", "week", "month")
NOTIFIER_KINDS = ("webhook", "slack", "log")
EVENT_KINDS = ("budget.threshold", "anomaly", "report.daily", "report.weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CURRENCY = re.compile(r"[A-Z]{3}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    admin_key_env: str | None = None
    admin_key: str | None = field(default=None, repr=False)
    require_keys: bool = False


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """A spend limit over a period; `soft` thresholds are fractions of `limit`; `hard` refuses requests."""

    name: str
    limit: Decimal
    currency: str
    period: str = "month"
    selector: Selector = field(default_factory=Selector)
    soft: tuple[Decimal, ...] = ()
    hard: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Requests and tokens per minute for what `selector` matches; `per` splits it by those fields."""

    name: str
    selector: Selector = field(default_factory=Selector)
    rpm: int | None = None
    tpm: int | None = None
    per: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotificationConfig:
    """One channel; `events` are event kinds or globs (`budget.*`), empty for every event."""

    name: str
    kind: str
    url: str | None = None
    secret_env: str | None = None
    secret: str | None = field(default=None, repr=False)
    events: tuple[str, ...] = ()

    def wants(self, event: str) -> bool:
        return not self.events or any(fnmatchcase(event, pattern) for pattern in self.events)


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    enabled: bool = True
    z_score: Decimal = Decimal(3)
    multiplier: Decimal = Decimal(3)
    min_spend: Decimal = Decimal(1)  # in the reporting currency
    min_tokens: int = 10_000
    baseline_days: int = 7
    min_baseline_days: int = 3
    interval_seconds: int = 300


@dataclass(frozen=True, slots=True)
class ReportSchedule:
    enabled: bool = True
    at: time = time(8, 0)  # UTC
    weekday: int | None = None  # 0 = Monday; weekly reports only


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    daily_report: ReportSchedule = field(default_factory=ReportSchedule)
    weekly_report: ReportSchedule = field(default_factory=lambda: ReportSchedule(weekday=0))


@dataclass(frozen=True, slots=True)
class GovernanceConfig:
    auth: AuthConfig = field(default_factory=AuthConfig)
    tenants: tuple[str, ...] = ()
    budgets: tuple[BudgetConfig, ...] = ()
    rate_limits: tuple[RateLimitConfig, ...] = ()
    notifications: tuple[NotificationConfig, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)


def _selector(r: Reader) -> Selector:
    return Selector(**{name: r.text(name) for name in FIELDS})


def _unique_name(r: Reader, default: str | None, seen: set[str]) -> str | None:
    name = r.text("name", pattern=_NAME, expected="a name of letters, digits, '_', '.', ':' or '-'")
    if name is None and default is None:
        r.problem("name", "required: every budget needs a name")
        return None
    name = name or default
    if name in seen:
        r.problem("name", f"duplicate name {name!r}")
        return None
    if name is not None:
        seen.add(name)
    return name


def parse_auth(raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]) -> AuthConfig:
    r = Reader("auth", mapping(raw, "auth", problems), {"admin_key_env", "require_keys"}, problems)
    env_name, admin_key = r.env_secret("admin_key_env", env)
    return AuthConfig(admin_key_env=env_name, admin_key=admin_key, require_keys=r.boolean("require_keys", False))


def parse_tenants(raw: Mapping[str, Any], problems: list[str]) -> tuple[str, ...]:
    """Tenant names; `discount_percent` is accepted here and validated where pricing reads it."""
    section = mapping(raw, "tenants", problems)
    for tenant, spec in section.items():
        if isinstance(spec, dict):
            Reader(f"tenants.{tenant}", spec, {"discount_percent"}, problems)
    return tuple(str(name) for name in section)


def parse_budgets(raw: Mapping[str, Any], problems: list[str]) -> tuple[BudgetConfig, ...]:
    allowed = {"name", *FIELDS, "period", "limit", "currency", "soft", "hard"}
    out: list[BudgetConfig] = []
    seen: set[str] = set()
    for where, item in items_of(raw, "budgets", problems):
        r = Reader(where, item, allowed, problems)
        name = _unique_name(r, None, seen)
        period = item.get("period", "month")
        if period not in PERIODS:
            r.problem("period", f"expected day, week or month, got {period!r}")
        limit = r.decimal("limit", None)
        if "limit" not in item:
            r.problem("limit", 'required: the budget\'s amount as a decimal string, like "50"')
        currency = r.text("currency", pattern=_CURRENCY, expected="a 3-letter currency code like USD")
        if "currency" not in item:
            r.problem("currency", "required: the currency of limit, like USD")
        soft = _thresholds(r, item.get("soft"))
        hard = r.boolean("hard", False)
        if name and limit is not None and currency and period in PERIODS:
            out.append(BudgetConfig(name, limit, currency, period, _selector(r), soft, hard))
    return tuple(out)


def _thresholds(r: Reader, value: Any) -> tuple[Decimal, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.problem("soft", f"expected a list of fractions of the limit like [0.5, 0.8, 1.0], got {value!r}")
        return ()
    out: list[Decimal] = []
    for i, item in enumerate(value):
        fraction = to_decimal(item)
        if fraction is None or not 0 < fraction <= 10:
            r.problem(f"soft[{i}]", f"expected a fraction of the limit above 0 (0.8 = 80%), got {item!r}")
        elif fraction in out:
            r.problem(f"soft[{i}]", f"duplicate threshold {item!r}")
        else:
            out.append(fraction)
    return tuple(sorted(out))


def parse_rate_limits(raw: Mapping[str, Any], problems: list[str]) -> tuple[RateLimitConfig, ...]:
    allowed = {"name", *FIELDS, "per", "rpm", "tpm"}
    out: list[RateLimitConfig] = []
    seen: set[str] = set()
    for where, item in items_of(raw, "rate_limits", problems):
        r = Reader(where, item, allowed, problems)
        name = _unique_name(r, where, seen)
        rpm = r.integer("rpm", None, 1, 10**9)
        tpm = r.integer("tpm", None, 1, 10**12)
        if "rpm" not in item and "tpm" not in item:
            r.problem("rpm", "a rate limit needs rpm (requests per minute), tpm (tokens per minute) or both")
        per = _per(r, item.get("per"))
        if name and (rpm or tpm):
            out.append(RateLimitConfig(name, _selector(r), rpm, tpm, per))
    return tuple(out)


def _per(r: Reader, value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if values is None:
        return ()
    if not isinstance(values, list) or any(v not in FIELDS for v in values):
        r.problem("per", f"expected some of {', '.join(FIELDS)}, got {value!r}")
        return ()
    return tuple(dict.fromkeys(values))


def parse_notifications(
    raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> tuple[NotificationConfig, ...]:
    allowed = {"name", "kind", "url", "secret_env", "events"}
    out: list[NotificationConfig] = []
    seen: set[str] = set()
    for where, item in items_of(raw, "notifications", problems):
        r = Reader(where, item, allowed, problems)
        kind = item.get("kind")
        if kind not in NOTIFIER_KINDS:
            r.problem("kind", f"expected webhook, slack or log, got {kind!r}")
            continue
        name = _unique_name(r, f"{kind}-{where.removeprefix('notifications[').rstrip(']')}", seen)
        url = r.text("url", pattern=re.compile(r"https?://\S+"), expected="an http(s) URL")
        if kind != "log" and "url" not in item:
            r.problem("url", f"required for kind {kind}")
        secret_env, secret = r.env_secret("secret_env", env)
        if secret_env and kind != "webhook":
            r.problem("secret_env", "only webhook notifications are signed")
        events = _events(r, item.get("events"))
        if name and (url or kind == "log"):
            out.append(NotificationConfig(name, kind, url, secret_env, secret, events))
    return tuple(out)


def _events(r: Reader, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        r.problem("events", f"expected a list of event kinds ({', '.join(EVENT_KINDS)}), got {value!r}")
        return ()
    for i, pattern in enumerate(value):
        if not any(fnmatchcase(kind, pattern) for kind in EVENT_KINDS):
            r.problem(f"events[{i}]", f"matches no event kind (expected {', '.join(EVENT_KINDS)}), got {pattern!r}")
    return tuple(value)


def parse_alerts(raw: Mapping[str, Any], problems: list[str]) -> AlertsConfig:
    r = Reader("alerts", mapping(raw, "alerts", problems), {"anomaly", "daily_report", "weekly_report"}, problems)
    return AlertsConfig(
        anomaly=_anomaly(_sub(r, "anomaly"), problems),
        daily_report=_schedule("alerts.daily_report", _sub(r, "daily_report"), False, problems),
        weekly_report=_schedule("alerts.weekly_report", _sub(r, "weekly_report"), True, problems),
    )


def _sub(r: Reader, key: str) -> dict[str, Any]:
    value = r.value.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.problem(key, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _anomaly(section: dict[str, Any], problems: list[str]) -> AnomalyConfig:
    d = AnomalyConfig()
    keys = {"enabled", "z_score", "multiplier", "min_spend", "min_tokens", "baseline_days", "min_baseline_days",
            "interval_seconds"}  # fmt: skip
    r = Reader("alerts.anomaly", section, keys, problems)
    baseline_days = r.integer("baseline_days", d.baseline_days, 1, 90) or d.baseline_days
    min_days = r.integer("min_baseline_days", min(d.min_baseline_days, baseline_days), 1, 90) or 1
    if min_days > baseline_days:
        r.problem("min_baseline_days", f"expected at most baseline_days ({baseline_days}), got {min_days}")
        min_days = baseline_days
    return AnomalyConfig(
        enabled=r.boolean("enabled", d.enabled),
        z_score=r.decimal("z_score", d.z_score) or d.z_score,
        multiplier=r.decimal("multiplier", d.multiplier) or d.multiplier,
        min_spend=r.decimal("min_spend", d.min_spend, positive=False) or Decimal(0),
        min_tokens=r.integer("min_tokens", d.min_tokens, 0, 10**15) or 0,
        baseline_days=baseline_days,
        min_baseline_days=min_days,
        interval_seconds=r.integer("interval_seconds", d.interval_seconds, 10, 86_400) or d.interval_seconds,
    )


def _schedule(where: str, section: dict[str, Any], weekly: bool, problems: list[str]) -> ReportSchedule:
    r = Reader(where, section, {"enabled", "at", "day"} if weekly else {"enabled", "at"}, problems)
    at = time(8, 0)
    text = section.get("at")
    if text is not None:
        match = _HHMM.fullmatch(str(text))
        if match is None:
            r.problem("at", f'expected a UTC time of day like "08:00", got {text!r}')
        else:
            at = time(int(match.group(1)), int(match.group(2)))
    weekday = None
    if weekly:
        day = str(section.get("day", "monday")).lower()
        if day not in WEEKDAYS:
            r.problem("day", f"expected a day of the week like monday, got {section.get('day')!r}")
            day = "monday"
        weekday = WEEKDAYS.index(day)
    return ReportSchedule(enabled=r.boolean("enabled", True), at=at, weekday=weekday)


def parse_governance(raw: Mapping[str, Any], env: Mapping[str, str], problems: list[str]) -> GovernanceConfig:
    """Read every governance section of the config document, appending one line per problem."""
    return GovernanceConfig(
        auth=parse_auth(raw, env, problems),
        tenants=parse_tenants(raw, problems),
        budgets=parse_budgets(raw, problems),
        rate_limits=parse_rate_limits(raw, problems),
        notifications=parse_notifications(raw, env, problems),
        alerts=parse_alerts(raw, problems),
    )
