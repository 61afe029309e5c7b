"""config.yaml: loading, `${VAR}` interpolation and validation.

`load_config(path)` returns a `Config` or raises `ConfigError`, whose `problems` are one clear line
each (which key, what was expected). Nothing here touches the network or starts anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from gateway.providers.base import ProviderConfig
from governance.config import GovernanceConfig, parse_governance
from metrics.config import parse_metrics_config
from reconcile.settings import SettingsError, settings_from_config

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECTIONS = {
    "server", "storage", "pricing", "attribution", "providers", "models", "tenants",
    "auth", "budgets", "rate_limits", "notifications", "metrics", "alerts", "reconcile",
}  # fmt: skip
_PROVIDER_KEYS = {
    "kind", "base_url", "api_key_env", "api_key", "price_as", "timeout", "headers", "inject_stream_usage",
    "api_version", "secret_id_env", "secret_key_env", "region", "deployments",
}  # fmt: skip
_SIZE_UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
WORK_MEMORY_LIMIT = "256MB"
MIN_MEMORY_LIMIT = 64e6  # bytes: below this DuckDB may fail a checkpoint, which stops the store until a restart
DEFAULT_BOOK = Path(__file__).resolve().parent.parent / "pricing" / "book"


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    grace_seconds: float = 30.0
    max_body_bytes: int = 32 << 20


@dataclass(slots=True)
class StorageConfig:
    backend: str = "duckdb"
    path: Path = Path("data/meterway.duckdb")
    journal_dir: Path | None = None  # default: <path>.journal
    flush_interval_ms: int = 1000
    fsync: str = "interval"  # interval | always | never
    fsync_interval_ms: int | None = None  # default: 200, or flush_interval_ms when that is shorter
    threads: int = 1  # DuckDB worker threads of the gateway's store
    memory_limit: str = "128MB"  # DuckDB's memory limit in the gateway's store (its cache stays bounded)
    work_memory_limit: str = WORK_MEMORY_LIMIT  # ... while an export or a re-price runs (at least memory_limit)
    checkpoint: str = "load"  # load: after every load | quiet: after 10 s without loads
    max_pending_events: int = 1_000_000  # journaled but not stored; beyond it the writer reports degraded
    retention_days: int | None = None  # raw events older than this are dropped; rollups stay
    loader: str | None = None  # inline | process (default: process when serving with several workers)
    catalog: str | None = None  # ducklake: the Postgres catalog, "postgres:dbname=... host=... user=..."
    data_path: str | None = None  # ducklake: a folder or object store URL (s3://...) for the Parquet files
    compaction_interval_s: int = 900  # ducklake: seconds between compaction passes
    store_socket: Path | None = None  # not a config key: set for the workers of `serve --workers N`

    @property
    def spool(self) -> Path:
        return self.journal_dir or self.path.with_name(self.path.name + ".journal")


@dataclass(slots=True)
class PricingConfig:
    book: Path = DEFAULT_BOOK
    reporting_currency: str = "USD"


@dataclass(slots=True)
class AttributionConfig:
    tenant: str = "x-tenant-id"
    user: str = "x-user-id"
    feature: str = "x-feature"
    session: str = "x-session-id"
    tags: str = "x-meterway-tags"

    def header_names(self) -> set[bytes]:
        return {h.encode("latin-1") for h in (self.tenant, self.user, self.feature, self.session, self.tags)}


@dataclass(slots=True)
class ModelRoute:
    name: str
    provider: str
    model: str | None = None  # rewritten upstream when set


@dataclass(slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: list[ModelRoute] = field(default_factory=list)
    discounts: dict[str, Decimal] = field(default_factory=dict)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    raw: dict[str, Any] = field(default_factory=dict)  # the whole interpolated document
    path: Path | None = None


def interpolate(text: str, env: dict[str, str], problems: list[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"${{{name}}}: environment variable {name} is not set (use ${{{name}:-default}})")
        return ""

    # Whole-line comments are left alone, so a comment may mention ${VAR} freely.
    return "".join(
        line if line.lstrip().startswith("#") else _VAR.sub(repl, line) for line in text.splitlines(keepends=True)
    )


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror or exc})"]) from None
    problems: list[str] = []
    text = interpolate(text, env, problems)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: expected a mapping of sections at the top level"])
    cfg = parse_config(doc, env, problems, base=path.resolve().parent)
    cfg.path = path
    try:
        settings_from_config(cfg)
    except SettingsError as err:
        problems.extend(err.problems)
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return cfg


def parse_config(doc: dict[str, Any], env: dict[str, str], problems: list[str], base: Path) -> Config:
    for key in doc:
        if key not in _SECTIONS:
            problems.append(f"{key}: unknown section (expected one of {', '.join(sorted(_SECTIONS))})")
    cfg = Config(raw=doc)
    cfg.server = _server(_section(doc, "server", problems), problems)
    cfg.storage = _storage(_section(doc, "storage", problems), problems, base)
    cfg.pricing = _pricing(_section(doc, "pricing", problems), problems, base)
    cfg.attribution = _attribution(_section(doc, "attribution", problems), problems)
    declared = _section(doc, "providers", problems)
    cfg.providers = _providers(declared, env, problems)
    cfg.models = _models(doc.get("models"), set(declared), problems)  # a bad provider's own problem is enough
    cfg.discounts = _discounts(_section(doc, "tenants", problems), problems)
    parse_metrics_config(doc.get("metrics"), problems)
    cfg.governance = parse_governance(doc, env, problems)
    _check_filters(cfg, set(declared), problems)
    return cfg


def _check_filters(cfg: Config, providers: set[str], problems: list[str]) -> None:
    """A budget or rate limit whose provider filter names no configured provider would never apply."""
    named = [("budgets", b.name, b.selector) for b in cfg.governance.budgets]
    named += [("rate_limits", r.name, r.selector) for r in cfg.governance.rate_limits]
    for section, name, selector in named:
        if selector.provider is not None and selector.provider not in providers:
            known = ", ".join(sorted(providers)) or "none"
            problems.append(f"{section}: {name!r} names provider {selector.provider!r}, which is not configured "
                            f"(providers: {known}), so it would never apply")  # fmt: skip


def _section(doc: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _check_keys(where: str, value: dict[str, Any], allowed: set[str], problems: list[str]) -> None:
    for key in value:
        if key not in allowed:
            problems.append(f"{where}.{key}: unknown key (expected one of {', '.join(sorted(allowed))})")


def _int(where: str, value: Any, problems: list[str], lo: int = 0, hi: int = 2**31) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        try:
            if isinstance(value, str) and value.strip().isdecimal() and lo <= int(value) <= hi:
                return int(value)
        except ValueError:
            pass
        problems.append(f"{where}: expected an integer from {lo} to {hi}, got {value!r}")
        return None
    return value


def _float(where: str, value: Any, problems: list[str]) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or number <= 0:
        problems.append(f"{where}: expected a positive number of seconds, got {value!r}")
        return None
    return number


def _str(where: str, value: Any, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: expected a non-empty string, got {value!r}")
        return None
    return value


def _choice(where: str, value: Any, options: tuple[str, ...], problems: list[str]) -> str | None:
    """`value` if it is one of `options`; otherwise a problem that names them ('a', 'b' or 'c')."""
    if value in options:
        return str(value)
    names = [f"'{option}'" for option in options]
    problems.append(f"{where}: expected {', '.join(names[:-1])} or {names[-1]}, got {value!r}")
    return None


def _server(sec: dict[str, Any], problems: list[str]) -> ServerConfig:
    _check_keys("server", sec, {"host", "port", "grace_seconds", "max_body_bytes"}, problems)
    out = ServerConfig()
    sec = {key: value for key, value in sec.items() if value is not None}  # left empty (`port:`): the default
    if "host" in sec:
        out.host = _str("server.host", sec["host"], problems) or out.host
    if "port" in sec:
        port = _int("server.port", sec["port"], problems, 0, 65535)  # 0: a free port the OS chooses
        out.port = out.port if port is None else port
    if "grace_seconds" in sec:
        out.grace_seconds = _float("server.grace_seconds", sec["grace_seconds"], problems) or out.grace_seconds
    if "max_body_bytes" in sec:
        out.max_body_bytes = _int("server.max_body_bytes", sec["max_body_bytes"], problems, 1) or out.max_body_bytes
    return out


def _bytes(size: str) -> float:
    value = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Z]+)", size)
    assert value is not None
    return float(value[1]) * _SIZE_UNITS[value[2]]


def _memory_size(key: str, value: object, problems: list[str]) -> str | None:
    """A DuckDB memory size such as '256MB' (upper-cased, no spaces), or None after noting the problem."""
    limit = str(value).strip().upper().replace(" ", "")
    if re.fullmatch(r"(\d+(?:\.\d+)?)(KB|MB|GB|TB|KIB|MIB|GIB|TIB)", limit) is None:
        problems.append(f"{key}: expected a size such as '256MB' or '2GB', got {value!r}")
        return None
    if _bytes(limit) < MIN_MEMORY_LIMIT:
        problems.append(f"{key}: at least 64MB (a checkpoint of the event table needs that much), got {value!r}")
        return None
    return limit


def _storage(sec: dict[str, Any], problems: list[str], base: Path) -> StorageConfig:
    _check_keys("storage", sec, {"backend", "path", "journal_dir", "flush_interval_ms", "fsync", "fsync_interval_ms",
                                 "max_pending_events", "retention_days", "loader", "catalog", "data_path",
                                 "compaction_interval_s", "threads", "memory_limit", "work_memory_limit",
                                 "checkpoint"},
                 problems)  # fmt: skip
    out = StorageConfig(path=base / "data" / "meterway.duckdb")
    backend = sec.get("backend", "duckdb")
    _choice("storage.backend", backend, ("duckdb", "ducklake"), problems)
    out.backend = str(backend)
    if "path" in sec and (p := _str("storage.path", sec["path"], problems)):
        out.path = base / p
    if "journal_dir" in sec and (j := _str("storage.journal_dir", sec["journal_dir"], problems)):
        out.journal_dir = base / j
    if "flush_interval_ms" in sec:
        ms = _int("storage.flush_interval_ms", sec["flush_interval_ms"], problems, 1, 60_000)
        out.flush_interval_ms = ms or out.flush_interval_ms
    if "fsync" in sec:
        out.fsync = _choice("storage.fsync", sec["fsync"], ("interval", "always", "never"), problems) or out.fsync
    if "fsync_interval_ms" in sec:
        out.fsync_interval_ms = _int("storage.fsync_interval_ms", sec["fsync_interval_ms"], problems, 1, 60_000)
    if "max_pending_events" in sec:
        n = _int("storage.max_pending_events", sec["max_pending_events"], problems, 1)
        out.max_pending_events = n or out.max_pending_events
    if "checkpoint" in sec:
        out.checkpoint = _choice("storage.checkpoint", sec["checkpoint"], ("load", "quiet"), problems) or out.checkpoint
    if "threads" in sec:
        out.threads = _int("storage.threads", sec["threads"], problems, 1, 256) or out.threads
    if "memory_limit" in sec and (limit := _memory_size("storage.memory_limit", sec["memory_limit"], problems)):
        out.memory_limit = limit
    if "work_memory_limit" not in sec:  # the default, or memory_limit when that is larger
        out.work_memory_limit = max(WORK_MEMORY_LIMIT, out.memory_limit, key=_bytes)
    elif work := _memory_size("storage.work_memory_limit", sec["work_memory_limit"], problems):
        if _bytes(work) < _bytes(out.memory_limit):
            problems.append(f"storage.work_memory_limit: at least storage.memory_limit ({out.memory_limit}), "
                            f"got {sec['work_memory_limit']!r}")  # fmt: skip
        out.work_memory_limit = work
    if sec.get("retention_days") is not None:
        out.retention_days = _int("storage.retention_days", sec["retention_days"], problems, 1, 100_000)
    if sec.get("loader") is not None:
        out.loader = _choice("storage.loader", sec["loader"], ("inline", "process"), problems)
    _lake(sec, out, problems, base)
    return out


def _lake(sec: dict[str, Any], out: StorageConfig, problems: list[str], base: Path) -> None:
    if "compaction_interval_s" in sec:
        n = _int("storage.compaction_interval_s", sec["compaction_interval_s"], problems, 1, 7 * 86_400)
        out.compaction_interval_s = n or out.compaction_interval_s
    if out.backend != "ducklake":
        for key in ("catalog", "data_path"):
            if key in sec:
                problems.append(f"storage.{key}: only used with storage.backend: ducklake")
        return
    catalog = sec.get("catalog")
    if not isinstance(catalog, str) or not catalog.strip():
        problems.append('storage.catalog: required for ducklake, e.g. "postgres:dbname=meterway host=db user=meterway"')
    elif not catalog.removeprefix("ducklake:").startswith("postgres:"):
        problems.append(f"storage.catalog: expected a Postgres catalog starting with 'postgres:', got {catalog!r}")
    else:
        out.catalog = catalog.removeprefix("ducklake:")
    data = sec.get("data_path")
    if not isinstance(data, str) or not data.strip():
        problems.append("storage.data_path: required for ducklake: a folder (data/lake/) or an s3://, gs://, r2:// URL")
    elif "://" in data and not data.startswith(("s3://", "gs://", "gcs://", "r2://")):
        problems.append(f"storage.data_path: expected a folder or an s3://, gs:// or r2:// URL, got {data!r}")
    else:
        out.data_path = data if "://" in data else str(base / data).rstrip("/") + "/"


def _pricing(sec: dict[str, Any], problems: list[str], base: Path) -> PricingConfig:
    _check_keys("pricing", sec, {"book", "reporting_currency"}, problems)
    out = PricingConfig()
    if "book" in sec and (b := _str("pricing.book", sec["book"], problems)):
        out.book = base / b
        if not out.book.exists():
            problems.append(f"pricing.book: {out.book} does not exist")
    if "reporting_currency" in sec:
        cur = sec["reporting_currency"]
        if not (isinstance(cur, str) and re.fullmatch(r"[A-Z]{3}", cur)):
            problems.append(f"pricing.reporting_currency: expected a 3-letter currency code like USD, got {cur!r}")
        else:
            out.reporting_currency = cur
    return out


def _attribution(sec: dict[str, Any], problems: list[str]) -> AttributionConfig:
    out = AttributionConfig()
    _check_keys("attribution", sec, set(out.__slots__), problems)
    for key, value in sec.items():
        if key in out.__slots__ and (name := _str(f"attribution.{key}", value, problems)):
            setattr(out, key, name.lower())
    return out


def _providers(sec: dict[str, Any], env: dict[str, str], problems: list[str]) -> dict[str, ProviderConfig]:
    from gateway.providers.registry import KINDS

    out: dict[str, ProviderConfig] = {}
    for name, spec in sec.items():
        where = f"providers.{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", str(name)) or name in ("v1", "admin", "metrics", "dashboard"):
            problems.append(f"{where}: provider names are lowercase letters, digits, '-', '_' or '.' and not reserved")
            continue
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a mapping with kind and base_url")
            continue
        _check_keys(where, spec, _PROVIDER_KEYS, problems)
        kind = spec.get("kind")
        if kind not in KINDS:
            problems.append(f"{where}.kind: expected one of {', '.join(sorted(KINDS))}, got {kind!r}")
            continue
        base_url = spec.get("base_url")
        if not (isinstance(base_url, str) and re.match(r"https?://", base_url)):
            problems.append(f"{where}.base_url: expected an http(s) URL, got {base_url!r}")
            continue
        p = ProviderConfig(name=name, kind=kind, base_url=base_url.rstrip("/"))
        p.api_key_env = _env_name(where, spec, "api_key_env", problems)
        p.api_key = env.get(p.api_key_env) or None if p.api_key_env else None
        if spec.get("api_key"):
            p.api_key = str(spec["api_key"])
        id_env = _env_name(where, spec, "secret_id_env", problems)
        key_env = _env_name(where, spec, "secret_key_env", problems)
        p.secret_id = env.get(id_env) or None if id_env else None
        p.secret_key = env.get(key_env) or None if key_env else None
        if "price_as" in spec:
            p.price_as = _str(f"{where}.price_as", spec["price_as"], problems)
        if "timeout" in spec:
            p.timeout = _float(f"{where}.timeout", spec["timeout"], problems) or p.timeout
        if "inject_stream_usage" in spec:
            if not isinstance(spec["inject_stream_usage"], bool):
                problems.append(f"{where}.inject_stream_usage: expected true or false")
            else:
                p.inject_stream_usage = spec["inject_stream_usage"]
        p.headers = _str_map(f"{where}.headers", spec.get("headers"), problems)
        p.deployments = _str_map(f"{where}.deployments", spec.get("deployments"), problems)
        for key in ("api_version", "region"):
            if key in spec:
                setattr(p, key, _str(f"{where}.{key}", spec[key], problems))
        out[name] = p
    return out


def _env_name(where: str, spec: dict[str, Any], key: str, problems: list[str]) -> str | None:
    if key not in spec or spec[key] in (None, ""):
        return None
    return _str(f"{where}.{key}", spec[key], problems)


def _str_map(where: str, value: Any, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float)) for v in value.values()):
        problems.append(f"{where}: expected a mapping of names to strings")
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _models(value: Any, providers: set[str], problems: list[str]) -> list[ModelRoute]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append("models: expected a list of {name, provider[, model]}")
        return []
    out: list[ModelRoute] = []
    for i, item in enumerate(value):
        where = f"models[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping with name and provider")
            continue
        _check_keys(where, item, {"name", "provider", "model"}, problems)
        name = _str(f"{where}.name", item.get("name"), problems)
        provider = _str(f"{where}.provider", item.get("provider"), problems)
        if provider and provider not in providers:
            problems.append(f"{where}.provider: {provider!r} is not a configured provider")
            continue
        model = item.get("model")
        if model is not None and not isinstance(model, str):
            problems.append(f"{where}.model: expected a string")
            continue
        if name and provider:
            out.append(ModelRoute(name, provider, model))
    return out


def _discounts(sec: dict[str, Any], problems: list[str]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for tenant, spec in sec.items():
        if not isinstance(spec, dict):
            problems.append(f"tenants.{tenant}: expected a mapping like {{discount_percent: 20}}")
            continue
        if "discount_percent" not in spec:
            continue
        try:
            pct = Decimal(str(spec["discount_percent"]))
        except InvalidOperation:
            pct = Decimal(-1)
        if not Decimal(0) <= pct <= Decimal(100):
            problems.append(f"tenants.{tenant}.discount_percent: expected a number from 0 to 100")
            continue
        out[str(tenant)] = pct
    return out
