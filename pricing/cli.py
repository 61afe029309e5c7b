"""`meterway prices check|list|quote`: the price book from the command line.

`register(subparsers)` adds the `prices` command to the `meterway` argparse parser; each subcommand stores
its handler as `args.handler`, which takes the parsed arguments and returns the exit code. `main(argv)` runs
the command on its own. Without `--book`, the book shipped in this package is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from pricing.book import PriceBook, PriceBookError, unknown_tier
from pricing.entry import PriceEntry, format_short, format_ts
from pricing.parse import parse_timestamp
from pricing.pricer import DEFAULT_BOOK, Pricer

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `prices check|list|quote` to a parent parser's subcommands."""
    prices = subparsers.add_parser("prices", help="check, list and quote the price book")
    sub = prices.add_subparsers(dest="prices_command", metavar="{check,list,quote}", required=True)

    check = sub.add_parser("check", help="validate the price book; one line per problem")
    _common(check)
    check.set_defaults(handler=run_check)

    listing = sub.add_parser("list", help="the prices in force, as a table")
    _common(listing)
    listing.add_argument("--provider", help="only this provider (its price_as name)")
    listing.add_argument("--at", type=_timestamp, help="ISO date or time, UTC unless an offset is given (default: now)")
    listing.set_defaults(handler=run_list)

    quote = sub.add_parser("quote", help="estimate a request's cost before sending it")
    _common(quote)
    quote.add_argument("--provider", required=True)
    quote.add_argument("--model", required=True)
    quote.add_argument("--input", type=_tokens, required=True, help="input tokens, cached ones included")
    quote.add_argument("--output", type=_tokens, required=True, help="output tokens, reasoning included")
    quote.add_argument("--cached", type=_tokens, default=0, help="cached input tokens (part of --input)")
    quote.add_argument("--at", type=_timestamp, help="ISO date or time, UTC unless an offset is given (default: now)")
    quote.add_argument("--tenant", help="tenant the request is for")
    quote.add_argument("--discount", type=_percent, help="the tenant's discount in percent (e.g. 20)")
    quote.add_argument("--thinking", action="store_true", help="the request runs in thinking mode")
    quote.add_argument("--service-tier", help="flex, priority or batch, where the entry prices them")
    quote.add_argument("--json", action="store_true", help="print the estimate as JSON")
    quote.set_defaults(handler=run_quote)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="gateway config whose pricing and tenants to use "
                        "(default: ./config.yaml when present)")  # fmt: skip
    parser.add_argument(
        "--book", type=Path, help="price book file or folder (default: the config's, else the shipped book)"
    )
    parser.add_argument("--reporting-currency", help="currency to report costs in (default: the config's, else USD)")
    parser.set_defaults(config_discounts={}, config_check=None)


def apply_config(args: argparse.Namespace) -> str | None:
    """Fill --book, --reporting-currency, tenant discounts and the budgets' FX check from the gateway config;
    an error text or None."""
    path: Path | None = args.config
    if path is None and Path("config.yaml").is_file():
        path = Path("config.yaml")
    if path is not None:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            return f"{path}: cannot read config: {exc}"
        pricing = doc.get("pricing") if isinstance(doc, dict) else None
        if isinstance(pricing, dict):
            if args.book is None and isinstance(pricing.get("book"), str):
                args.book = path.resolve().parent / pricing["book"]
            if args.reporting_currency is None and isinstance(pricing.get("reporting_currency"), str):
                args.reporting_currency = pricing["reporting_currency"]
        tenants = doc.get("tenants") if isinstance(doc, dict) else None
        if isinstance(tenants, dict):
            args.config_discounts = {
                str(t): Decimal(str(v["discount_percent"]))
                for t, v in tenants.items()
                if isinstance(v, dict) and "discount_percent" in v
            }
        if isinstance(doc, dict) and doc.get("budgets"):
            args.config_check = _budget_check(doc)
    if args.reporting_currency is None:
        args.reporting_currency = "USD"
    return None


def _budget_check(doc: dict[str, Any]) -> Callable[[PriceBook], list[str]]:
    """The FX rates the config's budgets need from a book (governance/budget_fx.py), as `meterway serve` checks."""
    from governance.budget_fx import fx_problems
    from governance.config import parse_budgets

    budgets = parse_budgets(doc, [])  # the budgets' own problems are for `meterway serve` to report
    providers = doc.get("providers")
    price_as = {
        str(name): str(spec.get("price_as") or name)
        for name, spec in (providers.items() if isinstance(providers, dict) else ())
        if isinstance(spec, dict)
    }
    return lambda book: fx_problems(budgets, book, price_as, datetime.now(UTC))


def main(argv: Sequence[str] | None = None) -> int:
    """Run `prices ...` (argv without the program name, e.g. ["prices", "check"]) and return the exit code."""
    parser = argparse.ArgumentParser(prog="meterway")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    problem = apply_config(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    handler: Handler = args.handler
    return handler(args)


def _timestamp(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text)
        return parse_timestamp(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 date or time, got {text!r}") from None


def _tokens(text: str) -> int:
    if not text.isdecimal():
        raise argparse.ArgumentTypeError(f"expected a whole number of tokens, got {text!r}")
    return int(text)


def _percent(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, got {text!r}")
    return value


def _book_path(args: argparse.Namespace) -> Path:
    book: Path | None = getattr(args, "book", None)
    return book if book is not None else DEFAULT_BOOK


def _load(args: argparse.Namespace) -> PriceBook | None:
    try:
        return PriceBook.load(_book_path(args), reporting_currency=args.reporting_currency)
    except PriceBookError as exc:
        for problem in exc.problems:
            print(problem)
        return None


def run_check(args: argparse.Namespace) -> int:
    book = _load(args)
    if book is None:
        return 1
    problems = args.config_check(book) if args.config_check is not None else []
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {len(book.entries)} entries, {len(book.providers)} providers")
    return 0


def run_list(args: argparse.Namespace) -> int:
    book = _load(args)
    if book is None:
        return 1
    at: datetime = args.at or datetime.now(UTC)
    entries = book.in_force(at, args.provider)
    if not entries:
        known = ", ".join(book.providers)
        print(
            f"no prices in force at {format_ts(at)}"
            + (f" for provider {args.provider!r} (known: {known})" if args.provider else "")
        )
        return 1
    print(f"prices in force at {format_ts(at)}, per 1M tokens (book {book.version})")
    print(_table([_row(e) for e in entries]))
    return 0


_HEADER = (
    "provider",
    "model",
    "cur",
    "input",
    "cached",
    "cache_write",
    "output",
    "thinking",
    "since",
    "also",
    "aliases",
)
_NUMERIC = {3, 4, 5, 6, 7}


def _row(entry: PriceEntry) -> tuple[str, ...]:
    p = entry.prices
    writes = [p.get(k) for k in ("cache_write", "cache_write_5m", "cache_write_1h")]
    also = []
    if entry.tiers:
        also.append(f"{len(entry.tiers)} tiers")
    also.extend(f"{w.text} UTC" for w in entry.time_of_day)
    also.extend(entry.service_tiers)
    if entry.effective_to is not None:
        also.append(f"until {format_short(entry.effective_to)}")
    return (
        entry.provider,
        entry.model,
        entry.currency,
        _num(p.get("input")),
        _num(p.get("cached_input")),
        "/".join(_num(w) for w in writes if w is not None),
        _num(p.get("output")),
        _num(p.get("output_thinking")),
        format_short(entry.effective_from),
        ", ".join(also),
        ", ".join(entry.aliases),
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def line(row: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i in _NUMERIC else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(_HEADER), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def _num(value: Decimal | str | None) -> str:
    if value is None:
        return ""
    text = format(Decimal(value), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def run_quote(args: argparse.Namespace) -> int:
    if args.cached > args.input:
        print(f"error: --cached: {args.cached} must not exceed --input ({args.input}): cached tokens are part of "
              "the input", file=sys.stderr)  # fmt: skip
        return 2
    discounts = dict(args.config_discounts)
    if args.tenant and args.discount is not None:
        discounts[args.tenant] = args.discount
    try:
        pricer = Pricer(_book_path(args), discounts=discounts, reporting_currency=args.reporting_currency)
    except PriceBookError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    if args.service_tier is not None and args.service_tier not in pricer.book.service_tiers:
        print(f"error: --service-tier: {unknown_tier(repr(args.service_tier), pricer.book.service_tiers)}",
              file=sys.stderr)  # fmt: skip
        return 2
    quote = pricer.quote(
        args.provider,
        args.model,
        args.input,
        args.output,
        cached_tokens=args.cached,
        at=args.at,
        tenant=args.tenant,
        thinking=args.thinking,
        service_tier=args.service_tier,
        discount_percent=args.discount,
    )
    if args.json:
        print(json.dumps(quote, indent=2))
    else:
        print(_describe_quote(quote))
    return 0 if quote["pricing_status"] != "unpriced" else 1


def _describe_quote(q: dict[str, Any]) -> str:
    head = f"{q['provider']}/{q['model']} at {q['at']}"
    if q["price_id"] is None:
        return f"{head}: unpriced, no price book entry matches (book {q['book_version']})"
    lines = [f"{head}: {q['pricing_status']}, price {q['price_id']} (book {q['book_version']})"]
    if q["tenant"] or q["discount_percent"]:
        pct = q["discount_percent"] or "0"
        lines.append(
            f"tenant {q['tenant'] or '-'}: {pct}% discount, included in the costs (unit prices are list prices)"
        )
    if q["applied"]:
        lines.append("applied: " + "; ".join(q["applied"]))
    if q["thinking"]:
        lines.append("thinking mode")
    units = q["unit_prices_per_1m"]
    costs = q["costs"]
    tokens = q["tokens"]
    cur = q["currency"]
    output_unit = units.get("output_thinking") if q["thinking"] and "output_thinking" in units else units.get("output")
    rows = [
        ("input (uncached)", str(tokens["input"] - tokens["cached_input"]), units.get("input"), costs["input"]),
        ("cached input", str(tokens["cached_input"]), units.get("cached_input"), costs["cached_input"]),
        ("output", str(tokens["output"]), output_unit, costs["output"]),
    ]
    if costs["per_request"] not in (None, "0"):
        rows.append(("per request", "1", units.get("per_request"), costs["per_request"]))
    table = [("", "tokens", f"{cur}/1M", cur), *((a, b, c or "-", d or "-") for a, b, c, d in rows)]
    table.append(("total", "", "", costs["total"] or "-"))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for row in table:
        lines.append(
            "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])
        )
    if q["cost_reporting"] is not None:
        fx = (
            ""
            if q["currency"] == q["reporting_currency"]
            else f" at {q['currency']}->{q['reporting_currency']} {q['fx_rate']}"
        )
        lines.append(f"total in {q['reporting_currency']}: {q['cost_reporting']}{fx}")
    elif q["currency"] != q["reporting_currency"]:
        lines.append(
            f"total in {q['reporting_currency']}: unknown (no {q['currency']}->{q['reporting_currency']} rate)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
