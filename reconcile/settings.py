"""Reconciliation settings: the optional `reconcile:` section of config.yaml, validated.

```yaml
reconcile:
  tolerance: "0.05"            # a line matches when every compared figure is within 5%
  cost_abs_tolerance: "0.01"   # ... or its cost differs by at most this much (provider currency)
  snapshot_dir: data/reconcile # default: a `reconcile` folder beside storage.path
  bucket_width: 1d             # 1d or 1h (costs are always per day)
  max_retries: 5               # on 429 / 5xx from a reporting API
  base_delay: 1.0              # seconds; doubled on each retry unless retry-after says otherwise
  openai:
    base_url: https://api.openai.com
    admin_key_env: OPENAI_ADMIN_KEY
    gateway_providers:         # configured providers whose traffic this organization bills
      openai: {project: proj_abc, api_key: key_abc}   # optional: the project / key it uses upstream
  anthropic:
    base_url: https://api.anthropic.com
    admin_key_env: ANTHROPIC_ADMIN_KEY
    gateway_providers: [anthropic]
```

Without `gateway_providers`, the configured providers whose `base_url` is the provider's own API
host are taken (else the provider's name). Admin keys are never in the file: only the name of the
environment variable that holds one. A bad section gives one line per problem, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconcile.errors import ReconcileError

BUCKET_WIDTHS = ("1d", "1h")
DEFAULTS: dict[str, dict[str, str]] = {
    "openai": {"base_url": "https://api.openai.com", "admin_key_env": "OPENAI_ADMIN_KEY", "host": "api.openai.com"},
    "anthropic": {
        "base_url": "https://api.anthropic.com",
        "admin_key_env": "ANTHROPIC_ADMIN_KEY",
        "host": "api.anthropic.com",
    },
}
_TOP = {"tolerance", "cost_abs_tolerance", "snapshot_dir", "bucket_width", "max_retries", "base_delay", "max_delay",
        "timeout", *DEFAULTS}  # fmt: skip
_PROVIDER = {"base_url", "admin_key_env", "gateway_providers"}


class SettingsError(ReconcileError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a gateway provider's traffic lands at the provider: its project (workspace) and API key."""

    project: str | None = None
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    base_url: str
    admin_key_env: str
    gateway_providers: dict[str, Scope]  # llm_usage_events.provider -> its scope upstream


@dataclass(frozen=True, slots=True)
class ClientOptions:
    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    tolerance: Decimal = Decimal("0.05")
    cost_abs_tolerance: Decimal = Decimal("0.01")
    snapshot_dir: Path = Path("data/reconcile")
    bucket_width: str = "1d"
    client: ClientOptions = field(default_factory=ClientOptions)
    providers: dict[str, ProviderSettings] = field(default_factory=dict)

    def provider(self, name: str) -> ProviderSettings:
        if name not in self.providers:
            raise ReconcileError(f"provider: expected one of {', '.join(self.providers)}, got {name!r}")
        return self.providers[name]


def parse_settings(
    section: Any, gateway: Mapping[str, str] | None = None, storage_path: Path | None = None, base: Path | None = None
) -> ReconcileSettings:
    """`section` is config.yaml's `reconcile:` value (None when absent); `gateway` maps configured provider
    names to their base_url; `storage_path` places the default snapshot folder beside the DuckDB file."""
    problems: list[str] = []
    doc: dict[str, Any] = {}
    if isinstance(section, dict):
        doc = section
    elif section is not None:
        problems.append("reconcile: expected a mapping")
    for key in doc:
        if key not in _TOP:
            problems.append(f"reconcile.{key}: unknown key (expected one of {', '.join(sorted(_TOP))})")
    default_dir = storage_path.parent / "reconcile" if storage_path else Path("data/reconcile")
    snapshot_dir = Path(str(doc.get("snapshot_dir", default_dir)))
    if base is not None and not snapshot_dir.is_absolute() and "snapshot_dir" in doc:
        snapshot_dir = base / snapshot_dir
    width = str(doc.get("bucket_width", "1d"))
    if width not in BUCKET_WIDTHS:
        problems.append(f"reconcile.bucket_width: expected one of {', '.join(BUCKET_WIDTHS)}, got {width!r}")
    client = ClientOptions(
        max_retries=int(_number(doc, "max_retries", 5, problems)),
        base_delay=float(_number(doc, "base_delay", 1.0, problems)),
        max_delay=float(_number(doc, "max_delay", 60.0, problems)),
        timeout=float(_number(doc, "timeout", 60.0, problems)),
    )
    providers = {name: _provider(name, doc.get(name), gateway or {}, problems) for name in DEFAULTS}
    settings = ReconcileSettings(
        tolerance=_decimal(doc, "tolerance", "0.05", problems),
        cost_abs_tolerance=_decimal(doc, "cost_abs_tolerance", "0.01", problems),
        snapshot_dir=snapshot_dir,
        bucket_width=width,
        client=client,
        providers=providers,
    )
    if problems:
        raise SettingsError(problems)
    return settings


def settings_from_config(config: Any) -> ReconcileSettings:
    """From a loaded gateway `Config` (duck-typed: `raw`, `providers`, `storage.path`, `path`)."""
    gateway = {name: p.base_url for name, p in getattr(config, "providers", {}).items()}
    path = getattr(config, "path", None)
    base = Path(path).resolve().parent if path else None
    raw = getattr(config, "raw", {}) or {}
    return parse_settings(raw.get("reconcile"), gateway, config.storage.path, base)


def _provider(name: str, spec: Any, gateway: Mapping[str, str], problems: list[str]) -> ProviderSettings:
    where = f"reconcile.{name}"
    doc: dict[str, Any] = {}
    if isinstance(spec, dict):
        doc = spec
    elif spec is not None:
        problems.append(f"{where}: expected a mapping")
    for key in doc:
        if key not in _PROVIDER:
            problems.append(f"{where}.{key}: unknown key (expected one of {', '.join(sorted(_PROVIDER))})")
    defaults = DEFAULTS[name]
    base_url = str(doc.get("base_url", defaults["base_url"]))
    if urlsplit(base_url).scheme not in ("http", "https"):
        problems.append(f"{where}.base_url: expected an http(s) URL, got {base_url!r}")
    key_env = str(doc.get("admin_key_env", defaults["admin_key_env"]))
    if not key_env.replace("_", "").isalnum():
        problems.append(f"{where}.admin_key_env: expected the name of an environment variable, got {key_env!r}")
    return ProviderSettings(name, base_url, key_env, _gateway_providers(where, doc, name, gateway, problems))


def _gateway_providers(
    where: str, doc: dict[str, Any], name: str, gateway: Mapping[str, str], problems: list[str]
) -> dict[str, Scope]:
    spec = doc.get("gateway_providers")
    if spec is None:
        host = DEFAULTS[name]["host"]
        found = [g for g, url in gateway.items() if urlsplit(url).hostname == host]
        return {g: Scope() for g in found} or {name: Scope()}
    if isinstance(spec, list) and all(isinstance(s, str) for s in spec):
        return {s: Scope() for s in spec}
    if isinstance(spec, dict):
        out = {}
        for gname, scope in spec.items():
            scope = scope or {}
            if not isinstance(scope, dict) or set(scope) - {"project", "api_key"}:
                problems.append(f"{where}.gateway_providers.{gname}: expected {{project: ID, api_key: ID}} (optional)")
                continue
            project, key = scope.get("project"), scope.get("api_key")
            out[str(gname)] = Scope(str(project) if project else None, str(key) if key else None)
        return out
    problems.append(f"{where}.gateway_providers: expected a list of provider names or a mapping name -> scope")
    return {}


def _decimal(doc: dict[str, Any], key: str, default: str, problems: list[str]) -> Decimal:
    text = str(doc.get(key, default))
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        problems.append(f'reconcile.{key}: expected a decimal number >= 0 like "0.05", got {text!r}')
        return Decimal(default)
    return value


def _number(doc: dict[str, Any], key: str, default: float, problems: list[str]) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        problems.append(f"reconcile.{key}: expected a number >= 0, got {value!r}")
        return default
    return float(value)
