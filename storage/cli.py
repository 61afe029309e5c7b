"""`meterway report|export|bill|ingest|reprice`: the stored events from the command line.

`register(subparsers)` adds the commands to the `meterway` parser. Each opens a store (the DuckDB
file, or the running gateway's admin API when a gateway holds the file; see `stores.py`), runs,
and prints a table, CSV or JSON. Bad input exits 2 with one line naming the option; `ingest`
exits 1 when some records were rejected (the others are stored).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from storage import queries
from storage.errors import StoreError, duckdb_error, store_failure
from storage.tabular import Table, decimal_text, dumps, to_csv, to_terminal
from storage.timerange import QueryError

if TYPE_CHECKING:
    from storage.stores import Store

Handler = Callable[[argparse.Namespace], int]
DEFAULT_CONFIG = "config.yaml"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = _command(subparsers, "report", "costs and tokens by tenant, feature, model, provider or day", run_report)
    report.add_argument(
        "--by", default="tenant", choices=[*queries.BY, *queries.GRAINS], help="group by (default tenant)"
    )
    _range_options(report)
    for name in ("tenant", "provider", "model", "feature"):
        report.add_argument(f"--{name}", help=f"only this {name}")
    report.add_argument("--limit", help="at most this many rows")
    report.add_argument("--format", default="table", choices=("table", "csv", "json"))

    export = _command(subparsers, "export", "raw events as CSV or Parquet", run_export)
    export.add_argument("--format", default="csv", choices=("csv", "parquet"))
    _range_options(export)
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")

    bill = _command(subparsers, "bill", "per-tenant billing report for a month", run_bill)
    bill.add_argument("--month", required=True, help="the month to bill, like 2025-03 (UTC)")
    bill.add_argument("--format", default="table", choices=("table", "csv", "json"))

    ingest = _command(
        subparsers, "ingest", "store usage metered elsewhere (JSON lines), priced with the book", run_ingest
    )
    ingest.add_argument("file", type=Path, help="a JSONL file: one usage record per line")

    reprice = _command(subparsers, "reprice", "re-price stored events with the current price book", run_reprice)
    _range_options(reprice)
    reprice.add_argument("--dry-run", action="store_true", help="count and show changes, change nothing")


def _command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config file (default: ./config.yaml)")
    parser.add_argument(
        "--url",
        help="a running gateway to ask (default: the file, or the configured gateway); "
        "the admin key is read from auth.admin_key_env's variable, else MW_ADMIN_KEY",
    )
    parser.set_defaults(handler=handler)
    return parser


def _range_options(parser: argparse.ArgumentParser) -> None:
    forms = "ISO date or time (UTC unless an offset is given) or an age like 7d or 36h"
    parser.add_argument("--since", help=f"from this time on: {forms}")
    parser.add_argument("--until", help=f"before this time (default: now): {forms}")


@contextmanager
def _store(args: argparse.Namespace, must_exist: bool = True, job: bool = False) -> Iterator[Store]:
    """The store the command works on. A DuckDB error becomes a StoreError naming the memory limit that
    applied: `storage.work_memory_limit` for a job (an export, a re-price), else `storage.memory_limit`."""
    from gateway.cli import load_or_exit
    from gateway.config import Config
    from storage.stores import open_store  # here: the store (and DuckDB) only for the commands that use it

    if args.url and args.config == DEFAULT_CONFIG and not Path(DEFAULT_CONFIG).exists():
        config = Config()  # asking a gateway elsewhere needs no config here (the key: MW_ADMIN_KEY)
    else:
        config = load_or_exit(args.config)
    with open_store(config, args.url, must_exist) as store:
        try:
            yield store
        except Exception as exc:
            if not duckdb_error(exc):
                raise
            key = "work_memory_limit" if job else "memory_limit"
            value = getattr(config.storage, key) if config.storage.backend == "duckdb" else None
            raise StoreError(store_failure(exc, (f"storage.{key}", value))) from None


def _params(args: argparse.Namespace, *names: str) -> dict[str, str]:
    return {n: str(getattr(args, n)) for n in names if getattr(args, n, None) is not None}


def _guarded(run: Callable[[argparse.Namespace], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except QueryError as exc:
            print(f"error: --{exc.param.replace('_', '-')}: {exc.message.partition(': ')[2]}", file=sys.stderr)
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
        return 2

    return handler


def _print(table: Table, payload: Any, fmt: str, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    if fmt == "csv":
        out.write(to_csv(table))
    elif fmt == "json":
        out.write(dumps(payload).decode() + "\n")
    else:
        out.write(to_terminal(table))


@_guarded
def run_report(args: argparse.Namespace) -> int:
    with _store(args) as store:
        params = _params(args, "since", "until", "tenant", "provider", "model", "feature", "limit")
        payload, table = store.report(args.by, params)
    if args.format == "table":
        span = f"{payload['since'] or 'the first event'} to {payload['until']}"
        print(f"by {args.by}, {span} (UTC, whole hours)")
    _print(table, payload, args.format)
    return 0


@_guarded
def run_bill(args: argparse.Namespace) -> int:
    with _store(args) as store:
        payload, table = store.bill(args.month)
    if args.format == "table":
        print(f"billing for {payload['month']} (UTC), costs in {payload['reporting_currency']}")
    _print(table, payload, args.format)
    if args.format == "table":
        print(f"total: {decimal_text(payload['total_cost'])} {payload['reporting_currency']}")
    return 0


@_guarded
def run_export(args: argparse.Namespace) -> int:
    params = _params(args, "since", "until")
    if args.out is None and args.format == "parquet" and sys.stdout.isatty():
        raise StoreError("Parquet is binary: pass --out FILE or redirect standard output")
    with _store(args, job=True) as store:
        if args.out is None:
            count = store.export(args.format, params, sys.stdout.buffer)
        else:
            with args.out.open("wb") as out:
                count = store.export(args.format, params, out)
    print(f"exported {count} events" + (f" to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


@_guarded
def run_ingest(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise StoreError(f"{args.file}: no such file")
    with _store(args, must_exist=False) as store:
        result = store.ingest(args.file)
        where = store.where
    stored = f" ({result.new} new, {result.accepted - result.new} already stored)" if result.new is not None else ""
    print(f"ingested {result.accepted} of {result.records} records from {args.file} into {where}{stored}")
    for rejected in result.rejected:
        print(f"line {rejected.where}: {rejected.message}", file=sys.stderr)
    if result.rejected:
        print(f"{len(result.rejected)} records rejected", file=sys.stderr)
    return 1 if result.rejected else 0


@_guarded
def run_reprice(args: argparse.Namespace) -> int:
    if args.since is None:
        raise QueryError("since", "required: the start of the range to re-price")
    with _store(args, job=True) as store:
        result = store.reprice(_params(args, "since", "until"), args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    print(f"re-priced {result['since']} to {result['until']}: {result['examined']} events examined, "
          f"{verb} {result['changed']}")  # fmt: skip
    for example in result["examples"]:
        print(f"  {example['request_id']}: {_priced(example['old'])} -> {_priced(example['new'])}")
    return 0


def _priced(price: dict[str, Any]) -> str:
    """A price as an example shows it: the cost in the entry's currency and in the reporting currency (a change
    of reporting currency moves only the second), with the entry that priced it."""
    return (f"{price['total_cost']} {price['currency']} = {price['cost_reporting']} {price['reporting_currency']} "
            f"({price['price_id']})")  # fmt: skip
