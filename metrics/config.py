"""The `metrics:` config section: the naming scheme, and how each open-ended label stays bounded.

Tenant, feature, user, model and endpoint come from clients, so each gets a `LabelPolicy`:
`top_n` (the first N distinct values keep their name, later ones become `other`), `allow_list`
(listed values keep their name, the rest become `other`) or `none` (no such label). Defaults keep
tenant and feature (top 20), model (top 100) and endpoint (top 50), and drop user.

    metrics:
      naming: meterway            # meterway | opentelemetry | both
      tenant_label:   {mode: top_n, top_n: 20}
      feature_label:  {mode: allow_list, allow: [chat, search]}
      user_label:     {mode: none}

`parse_metrics_config` appends one line per problem to `problems`, in the style of config.yaml's
other sections, and returns the defaults for anything it could not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMINGS = ("meterway", "opentelemetry", "both")
MODES = ("top_n", "allow_list", "none")
MAX_TOP_N = 10_000


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    mode: str = "top_n"
    top_n: int = 20
    allow: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    naming: str = "meterway"
    tenant: LabelPolicy = field(default_factory=lambda: LabelPolicy("top_n", 20))
    feature: LabelPolicy = field(default_factory=lambda: LabelPolicy("top_n", 20))
    user: LabelPolicy = field(default_factory=lambda: LabelPolicy("none"))
    model: LabelPolicy = field(default_factory=lambda: LabelPolicy("top_n", 100))
    endpoint: LabelPolicy = field(default_factory=lambda: LabelPolicy("top_n", 50))

    @property
    def meterway_names(self) -> bool:
        return self.naming in ("meterway", "both")

    @property
    def genai_names(self) -> bool:
        return self.naming in ("opentelemetry", "both")


_POLICY_KEYS = {"tenant_label": "tenant", "feature_label": "feature", "user_label": "user"}
_ALWAYS_LABELLED = {"model_label": "model", "endpoint_label": "endpoint"}


def parse_metrics_config(section: object, problems: list[str]) -> MetricsConfig:
    if section is None:
        return MetricsConfig()
    if not isinstance(section, dict):
        problems.append("metrics: expected a mapping")
        return MetricsConfig()
    known = {"naming", *_POLICY_KEYS, *_ALWAYS_LABELLED}
    for key in section:
        if key not in known:
            problems.append(f"metrics.{key}: unknown key (expected one of {', '.join(sorted(known))})")
    defaults = MetricsConfig()
    policies: dict[str, LabelPolicy] = {}
    for key, attr in (_POLICY_KEYS | _ALWAYS_LABELLED).items():
        default: LabelPolicy = getattr(defaults, attr)
        policies[attr] = _policy(section.get(key), f"metrics.{key}", default, key in _ALWAYS_LABELLED, problems)
    return MetricsConfig(naming=_naming(section.get("naming", "meterway"), problems), **policies)


def _naming(value: object, problems: list[str]) -> str:
    if value in NAMINGS:
        return str(value)
    problems.append(f"metrics.naming: expected one of {', '.join(NAMINGS)}, got {value!r}")
    return "meterway"


def _policy(raw: object, where: str, default: LabelPolicy, required: bool, problems: list[str]) -> LabelPolicy:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping like {{mode: top_n, top_n: 20}}")
        return default
    for key in raw:
        if key not in ("mode", "top_n", "allow"):
            problems.append(f"{where}.{key}: unknown key (expected mode, top_n, allow)")
    mode = raw.get("mode", default.mode)
    modes = MODES[:2] if required else MODES
    if mode not in modes:
        problems.append(f"{where}.mode: expected one of {', '.join(modes)}, got {mode!r}")
        return default
    if mode == "top_n":
        return LabelPolicy("top_n", _top_n(raw.get("top_n", default.top_n), where, problems))
    if mode == "allow_list":
        return LabelPolicy("allow_list", 0, _allow(raw.get("allow"), where, problems))
    return LabelPolicy("none", 0)


def _top_n(value: Any, where: str, problems: list[str]) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TOP_N:
        return value
    problems.append(f"{where}.top_n: expected a whole number from 1 to {MAX_TOP_N}, got {value!r}")
    return 1


def _allow(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(dict.fromkeys(value))
    problems.append(f"{where}.allow: expected a non-empty list of names for mode allow_list")
    return ()
