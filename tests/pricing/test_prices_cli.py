"""`meterway prices check|list|quote`, run through `pricing.cli.main`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pricing import cli

BOOK = """
fx:
  - {from: CNY, to: USD, rate: "0.14", effective_from: 2025-01-01}
prices:
  - {provider: openai, model: gpt-4o, currency: USD, effective_from: 2024-05-13, input: 5, output: 15, source: test}
  - {provider: openai, model: gpt-4o, currency: USD, effective_from: 2024-11-15, input: 2.5, cached_input: 1.25,
     output: 10, source: test}
  - {provider: deepseek, model: deepseek-chat, aliases: [deepseek-v3], currency: CNY,
     effective_from: 2025-02-26T16:30:00Z, input: 2, cached_input: 0.5, output: 8, source: test,
     time_of_day: [{window_utc: "16:30-00:30", input: 1, cached_input: 0.25, output: 4}]}
"""


@pytest.fixture
def book(write_book: Callable[..., Path]) -> str:
    return str(write_book(BOOK))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_check_ok(capsys: pytest.CaptureFixture[str], book: str) -> None:
    assert run(capsys, "prices", "check", "--book", book) == (0, "ok: 3 entries, 2 providers\n")


def test_check_prints_every_problem(capsys: pytest.CaptureFixture[str], write_book: Callable[..., Path]) -> None:
    bad = write_book(BOOK.replace("input: 5,", "inptu: 5,").replace("currency: CNY,", ""))
    code, out = run(capsys, "prices", "check", "--book", str(bad))
    assert code == 1
    assert out.splitlines() == [
        "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): unknown field 'inptu'",
        "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): missing field 'input'",
        "book.yaml: prices[2] (deepseek/deepseek-chat 2025-02-26T16:30:00Z): missing currency",
    ]


def test_check_wants_fx_for_the_reporting_currency(capsys: pytest.CaptureFixture[str], book: str) -> None:
    code, out = run(capsys, "prices", "check", "--book", book, "--reporting-currency", "EUR")
    assert code == 1
    assert out.startswith("fx: no CNY->EUR rate for reporting currency EUR")


def test_check_with_a_config_wants_fx_for_its_budgets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, book: str
) -> None:
    config = tmp_path / "config.yaml"
    budgets = "budgets: [{name: a, tenant: acme, period: day, limit: '5', currency: XYZ, hard: true}]\n"
    config.write_text(f"pricing: {{book: {book}}}\n{budgets}")
    code, out = run(capsys, "prices", "check", "--config", str(config))
    assert (code, out.splitlines()) == (1, [
        "budgets: 'a' is in XYZ, but the price book has no CNY->XYZ or USD->XYZ rate (its FX rates: CNY->USD), so "
        "the requests it applies to priced in CNY or USD would be refused; add the rate to the book's fx, or use a "
        "currency it converts to"
    ])  # fmt: skip
    config.write_text(config.read_text().replace("XYZ", "CNY"))
    assert run(capsys, "prices", "check", "--config", str(config)) == (0, "ok: 3 entries, 2 providers\n")


def test_list_shows_the_prices_in_force(capsys: pytest.CaptureFixture[str], book: str) -> None:
    code, out = run(capsys, "prices", "list", "--book", book, "--at", "2025-03-01")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("prices in force at 2025-03-01T00:00:00Z, per 1M tokens")
    assert lines[1].split() == [
        "provider", "model", "cur", "input", "cached", "cache_write", "output", "thinking", "since", "also", "aliases"
    ]  # fmt: skip
    assert lines[3].split() == [
        "deepseek",
        "deepseek-chat",
        "CNY",
        "2",
        "0.5",
        "8",
        "2025-02-26T16:30:00Z",
        "16:30-00:30",
        "UTC",
        "deepseek-v3",
    ]
    assert lines[4].split() == ["openai", "gpt-4o", "USD", "2.5", "1.25", "10", "2024-11-15"]
    assert len({len(line.rstrip()) >= len("provider") for line in lines[1:]}) == 1


def test_list_filters_by_provider_and_time(capsys: pytest.CaptureFixture[str], book: str) -> None:
    code, out = run(capsys, "prices", "list", "--book", book, "--provider", "openai", "--at", "2024-06-01T12:00:00Z")
    assert code == 0
    assert out.splitlines()[3].split() == ["openai", "gpt-4o", "USD", "5", "15", "2024-05-13"]
    assert len(out.splitlines()) == 4
    code, out = run(capsys, "prices", "list", "--book", book, "--provider", "nope")
    assert code == 1
    assert "for provider 'nope' (known: deepseek, openai)" in out


def test_quote_prints_the_breakdown(capsys: pytest.CaptureFixture[str], book: str) -> None:
    code, out = run(
        capsys,
        *("prices", "quote", "--book", book, "--provider", "deepseek", "--model", "deepseek-v3"),
        *("--input", "1000000", "--cached", "200000", "--output", "100000", "--at", "2025-03-01T17:00:00Z"),
        *("--tenant", "acme", "--discount", "50"),
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "deepseek/deepseek-v3 at 2025-03-01T17:00:00Z: priced, price " + (
        "deepseek/deepseek-chat@2025-02-26T16:30:00Z" + lines[0][lines[0].index(" (book") :]
    )
    assert "tenant acme: 50% discount, included in the costs (unit prices are list prices)" in lines
    assert "applied: time_of_day 16:30-00:30 UTC" in lines
    rows = [line.split() for line in lines if ":" not in line]
    table = {row[0]: row[-1] for row in rows if row[0] in ("input", "cached", "output", "total")}
    assert table == {
        "input": "0.4",
        "cached": "0.025",
        "output": "0.2",
        "total": "0.625",
    }  # 800k×1, 200k×0.25, 100k×4; ×0.5
    assert lines[-1] == "total in USD: 0.0875 at CNY->USD 0.14"


def test_quote_as_json(capsys: pytest.CaptureFixture[str], book: str) -> None:
    code, out = run(
        capsys, "prices", "quote", "--book", book, "--provider", "openai", "--model", "gpt-4o",
        "--input", "1000", "--output", "1000", "--at", "2025-01-01", "--json",
    )  # fmt: skip
    assert code == 0
    quote = json.loads(out)
    assert quote["costs"]["total"] == "0.0125"
    assert quote["cost_reporting"] == "0.0125"


def test_quote_refuses_more_cached_tokens_than_input_and_unknown_service_tiers(
    capsys: pytest.CaptureFixture[str], write_book: Callable[..., Path]
) -> None:
    book = str(write_book(
        "prices:\n  - {provider: openai, model: gpt-4o, currency: USD, effective_from: 2024-11-15, input: 2.5, "
        "output: 10,\n     service_tiers: {flex: {input: 1.25, output: 5}, priority: {input: 5, output: 20}}}\n"
    ))  # fmt: skip
    quote = ["prices", "quote", "--book", book, "--provider", "openai", "--model", "gpt-4o", "--output", "1"]
    assert cli.main([*quote, "--input", "100", "--cached", "500"]) == 2
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "error: --cached: 500 must not exceed --input (100): cached tokens are part of "
                                      "the input\n")  # fmt: skip
    assert cli.main([*quote, "--input", "100", "--service-tier", "bogus"]) == 2
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "error: --service-tier: 'bogus' is not a service tier the price book prices "
                                      "(known: flex, priority); leave it out for standard prices\n")  # fmt: skip
    assert cli.main([*quote, "--input", "100", "--cached", "100", "--service-tier", "flex"]) == 0
    assert "applied: service_tier flex" in capsys.readouterr().out


def test_quote_unknown_model_exits_1(capsys: pytest.CaptureFixture[str], book: str) -> None:
    code, out = run(
        capsys,
        "prices",
        "quote",
        "--book",
        book,
        "--provider",
        "openai",
        "--model",
        "gpt-9",
        "--input",
        "1",
        "--output",
        "1",
    )
    assert code == 1
    assert "openai/gpt-9" in out
    assert "unpriced" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["prices", "quote", "--provider", "openai", "--model", "gpt-4o", "--input", "-3", "--output", "1"],
        [
            "prices",
            "quote",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--input",
            "1",
            "--output",
            "1",
            "--discount",
            "150",
        ],
        ["prices", "list", "--at", "yesterday"],
        ["prices"],
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_register_adds_prices_to_a_parent_parser() -> None:
    parser = argparse.ArgumentParser(prog="meterway")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["prices", "check", "--book", "x.yaml"])
    assert args.handler is cli.run_check
    assert args.book == Path("x.yaml")
