"""`meterway keys create|list|revoke`: gateway keys from the command line.

They work on the same key file the gateway reads (`<data dir>/keys.json`, holding only digests);
a running gateway sees a new or revoked key on its next request. `create` prints the key alone on
its last line of output: it is shown this once and never stored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from governance.keys import GatewayKeys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke gateway keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="a new key for a tenant; printed once, on the last line")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name")
    create.add_argument("--user", help="requests with this key are attributed to this user")
    create.add_argument("--feature", help="requests with this key are attributed to this feature")
    create.add_argument("--expires", help="ISO date or time (UTC unless an offset is given)")
    create.add_argument("--models", default="", help="allowed models, comma-separated globs (default: any)")
    create.add_argument("--providers", default="", help="allowed providers, comma-separated (default: any)")
    create.set_defaults(handler=cmd_create)
    listing = ksub.add_parser("list", help="every key: id, tenant, limits, state (never the key)")
    listing.set_defaults(handler=cmd_list)
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_revoke)
    for parser in (create, listing, revoke):
        parser.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")


def _keys(args: argparse.Namespace) -> GatewayKeys:
    from gateway.cli import load_or_exit
    from gateway.governance_setup import key_store

    config = load_or_exit(args.config)
    config.storage.path.parent.mkdir(parents=True, exist_ok=True)
    return GatewayKeys(key_store(config), providers=config.providers)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def cmd_create(args: argparse.Namespace) -> int:
    expires = None
    if args.expires:
        try:
            expires = datetime.fromisoformat(args.expires)
        except ValueError:
            print(f"--expires: expected an ISO date or time, got {args.expires!r}", file=sys.stderr)
            return 2
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    try:
        record, raw = _keys(args).create(
            args.tenant, name=args.name, user=args.user, feature=args.feature, expires_at=expires,
            allowed_models=_csv(args.models), allowed_providers=_csv(args.providers),
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created key {record.id} for tenant {record.tenant}" + (f" ({record.name})" if record.name else ""))
    print("store it now; it is not shown again:")
    print(raw)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("id", "tenant", "name", "state", "expires", "models", "providers")]
    now = datetime.now(UTC)
    for r in _keys(args).list():
        state = "revoked" if r.revoked else "expired" if r.expires_at and r.expires_at <= now else "active"
        expires = r.expires_at.isoformat() if r.expires_at else "-"
        rows.append((r.id, r.tenant, r.name or "-", state, expires, ",".join(r.allowed_models) or "any",
                     ",".join(r.allowed_providers) or "any"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    record = _keys(args).revoke(args.key_id)
    if record is None:
        print(f"no key with id {args.key_id!r}")
        return 1
    print(f"revoked key {record.id} of tenant {record.tenant}")
    return 0
