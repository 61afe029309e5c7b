"""`meterway reconcile`: compare the gateway's events with a provider's usage and cost reports.

    meterway reconcile --provider openai|anthropic [--since 7d] [--until now] [--by model|project|api_key]
                       [--bucket-width 1d|1h] [--format table|csv|json] [--tolerance 0.05]
                       [--offline | --snapshot ID] [--list-snapshots] [--check] [--config PATH] [--url URL]

The gateway's side comes from the DuckDB file when no gateway holds it (a journal a stopped gateway
left behind is loaded first), else from the running gateway's `/admin/reconcile` (at `--url`, by
default the configured server, with the admin key from `auth.admin_key_env`), which then also
does the fetching with its own environment's admin keys. Exit codes: 0 done (with `--check`:
and the totals match), 1 with `--check` when they do not, 2 bad input or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import httpx

from reconcile.api import VERDICT_HEADER, parse_request
from reconcile.compare import LEVELS
from reconcile.errors import ReconcileError
from reconcile.render import FORMATS, render
from reconcile.report import MATCH
from reconcile.service import Reconciler, Request
from reconcile.settings import BUCKET_WIDTHS, ReconcileSettings, SettingsError, settings_from_config
from reconcile.snapshots import SnapshotStore
from storage.tabular import dumps
from storage.timerange import QueryError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "compare what Meterway metered with what a provider reports and bills"
    parser = subparsers.add_parser("reconcile", help=text, description=text)
    parser.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")
    parser.add_argument("--provider", required=True, choices=("openai", "anthropic"))
    forms = "ISO date or time (UTC unless an offset is given) or an age like 7d or 36h"
    parser.add_argument("--since", help=f"from this time on (default 7d): {forms}")
    parser.add_argument("--until", help=f"before this time (default: now): {forms}")
    parser.add_argument("--by", choices=LEVELS, default="model", help="one line per model (default), or also per "
                        "project / workspace, or per API key")  # fmt: skip
    parser.add_argument("--bucket-width", choices=BUCKET_WIDTHS, help="days (default) or hours")
    parser.add_argument("--format", default="table", choices=FORMATS)
    parser.add_argument("--tolerance", help="relative difference still counted as a match (default 0.05 = 5%%)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--offline", action="store_true", help="use the latest stored snapshot, do not ask the provider"
    )
    source.add_argument("--snapshot", help="use this stored snapshot (an id from --list-snapshots)")
    source.add_argument("--list-snapshots", action="store_true", help="list the stored snapshots and stop")
    parser.add_argument("--check", action="store_true", help="exit 1 when the totals do not match")
    parser.add_argument("--url", help="a running gateway to ask (default: the file, or the configured gateway)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gateway.cli import load_or_exit

    config = load_or_exit(args.config)
    try:
        settings = settings_from_config(config)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    if args.list_snapshots:
        return _list_snapshots(settings, args.provider)
    params = {
        "provider": args.provider, "since": args.since, "until": args.until, "by": args.by,
        "bucket_width": args.bucket_width, "tolerance": args.tolerance, "offline": "true" if args.offline else None,
        "snapshot": args.snapshot,
    }  # fmt: skip
    params = {k: v for k, v in params.items() if v is not None}
    try:
        request = parse_request(params, settings)
        if args.url:
            text, verdict = _remote(args.url, config, {**params, "format": args.format})
        else:
            text, verdict = _local(config, settings, request, args.format)
    except QueryError as exc:
        print(f"error: --{exc.param.replace('_', '-')}: {exc.message.partition(': ')[2]}", file=sys.stderr)
        return 2
    except ReconcileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 1 if args.check and verdict != MATCH else 0


def _local(config: Any, settings: ReconcileSettings, request: Request, fmt: str) -> tuple[str, str]:
    from storage.errors import StorageError, StorageLocked
    from storage.stores import LocalStore, gateway_url

    path = config.storage.path
    if not path.exists():
        raise ReconcileError(f"no events stored yet: {path} does not exist (check storage.path in the config)")
    try:
        store = LocalStore(config)
    except StorageLocked:
        params = {k: v for k, v in _as_params(request).items() if v is not None}
        return _remote(gateway_url(config), config, {**params, "format": fmt})
    except StorageError as exc:
        raise ReconcileError(str(exc)) from None
    try:
        report = asyncio.run(Reconciler(settings, store.sink.query).run(request))
    finally:
        store.close()
    return render(report, fmt), report.totals.verdict


def _remote(url: str, config: Any, params: dict[str, str]) -> tuple[str, str]:
    from storage.stores import key_variable

    variable = key_variable(config)
    key = os.environ.get(variable)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/admin/reconcile", params=params, headers=headers, timeout=600)
    except httpx.HTTPError as exc:
        raise ReconcileError(f"cannot reach the gateway at {url}: {exc}") from None
    if response.status_code == 401:
        raise ReconcileError(f"{url} {'refused the admin key in' if key else 'needs the admin key: set'} {variable}")
    if response.status_code != 200:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}: {response.text[:200]}"
        raise ReconcileError(f"{url}: {message}")
    return response.text, response.headers.get(VERDICT_HEADER, "")


def _as_params(request: Request) -> dict[str, str | None]:
    return {
        "provider": request.provider, "since": request.since.isoformat(), "until": request.until.isoformat(),
        "by": request.by, "bucket_width": request.bucket_width,
        "tolerance": None if request.tolerance is None else str(request.tolerance),
        "offline": "true" if request.offline else None, "snapshot": request.snapshot_id,
    }  # fmt: skip


def _list_snapshots(settings: ReconcileSettings, provider: str) -> int:
    found = SnapshotStore(settings.snapshot_dir).list(provider)
    if not found:
        print(f"no {provider} snapshots in {settings.snapshot_dir / provider}")
        return 0
    for info in found:
        print(dumps(info.as_dict()).decode())
    return 0
