"""The `meterway` console script: serve, demo, prices, and the storage commands.

Every subcommand takes `--config PATH` (default ./config.yaml). A bad config prints one line per
problem and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from gateway.config import Config, ConfigError, load_config

Handler = Callable[[argparse.Namespace], int]


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")


def load_or_exit(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as err:
        _print_problems(err)
        raise SystemExit(2) from None


def _print_problems(err: ConfigError) -> None:
    for problem in err.problems:
        print(f"config error: {problem}", file=sys.stderr)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every upstream request at INFO


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.costing import EventPricer
    from gateway.server import serve
    from storage.residency import one_malloc_arena

    one_malloc_arena()  # before any thread starts (see storage/residency.py)
    config = load_or_exit(args.config)
    if args.host:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    try:
        pricer = EventPricer.load(config)  # before any process starts: the store process and workers load it too
    except ConfigError as err:
        _print_problems(err)
        return 2
    from storage.errors import StorageError

    try:
        return serve(config, workers=args.workers, pricer=pricer)
    except StorageError as exc:  # a locked or too new DuckDB file: one clear line, no traceback
        print(f"storage error: {exc}", file=sys.stderr)
        return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo_run import run_demo

    return run_demo(args)


def port_number(text: str) -> int:
    """A TCP port for `--port`: 0 to 65535, as `server.port` takes."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterway", description="An LLM gateway that meters every request.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    _add_config(serve)
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=port_number, help="port to listen on (default: server.port)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1; more share one store)")
    serve.set_defaults(handler=cmd_serve)

    demo = sub.add_parser("demo", help="the gateway with a simulated upstream and generated traffic (its own config)")
    demo.add_argument("--port", type=port_number, default=8080)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--data", default="data/demo/meterway.duckdb", help="where the demo stores its events")
    demo.add_argument("--requests", type=int, default=0, help="stop generating after N requests (0: keep going)")
    demo.add_argument("--history-days", type=int, default=8, help="days of past traffic to fill in (default 8)")
    demo.add_argument("--spike-after", type=float, default=30.0, help="seconds before the spend spike (default 30)")
    demo.set_defaults(handler=cmd_demo)

    from gateway import keys_cli
    from pricing import cli as pricing_cli

    pricing_cli.register(sub)

    from storage import cli as storage_cli

    storage_cli.register(sub)
    keys_cli.register(sub)

    from reconcile import cli as reconcile_cli

    reconcile_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    if args.command == "prices":
        from pricing.cli import apply_config

        problem = apply_config(args)
        if problem:
            print(f"config error: {problem}", file=sys.stderr)
            return 2
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
