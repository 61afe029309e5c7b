"""A bad price book is refused with one clear line per problem, naming the file, the entry and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pricing.book import PriceBook, PriceBookError

GOOD = "{provider: openai, model: gpt-4o, currency: USD, effective_from: 2024-05-13, input: 5, output: 15}"


def problems(text: str, *, reporting_currency: str | None = None) -> list[str]:
    with pytest.raises(PriceBookError) as info:
        PriceBook.loads(text, name="book.yaml", reporting_currency=reporting_currency)
    return info.value.problems


def entry(**fields: object) -> str:
    base: dict[str, object] = {
        "provider": "openai",
        "model": "gpt-4o",
        "currency": "USD",
        "effective_from": "2024-05-13",
        "input": 5,
        "output": 15,
    }
    base.update(fields)
    body = ", ".join(f"{k}: {v}" for k, v in base.items() if v is not None)
    return "{" + body + "}"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inptu": 5}, "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): unknown field 'inptu'"),
        ({"currency": None}, "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): missing currency"),
        ({"currency": "usd"}, "'currency' must be a 3-letter currency code like USD, got 'usd'"),
        ({"input": -1}, "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): 'input' is negative: -1"),
        ({"output": "cheap"}, "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): 'output' is not a number: 'cheap'"),
        ({"output": ".nan"}, "'output' is not a number: '.nan'"),
        ({"output": '"NaN"'}, "'output' is not a finite number: 'NaN'"),
        ({"cached_input": "true"}, "'cached_input' is not a number: True"),
        ({"input": None}, "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): missing field 'input'"),
        ({"model": None}, "book.yaml: prices[0] (openai/? 2024-05-13): missing field 'model'"),
        ({"effective_from": "2024-13-01"}, "(openai/gpt-4o 2024-13-01): bad date in 'effective_from': month must be"),
        (
            {"effective_from": "2024-05-13T10:00:00"},
            "'effective_from': '2024-05-13T10:00:00' has a time but no timezone",
        ),
        ({"effective_from": None}, "missing field 'effective_from'"),
        ({"effective_to": "2024-05-13"}, "effective_to 2024-05-13 must be after effective_from 2024-05-13"),
        ({"effective_to": "2024-01-01"}, "effective_to 2024-01-01 must be after effective_from 2024-05-13"),
        ({"unit": "per_1k_tokens"}, "'unit' must be 'per_1m_tokens'"),
        ({"aliases": "gpt4o"}, "'aliases' must be a list of model ids, got 'gpt4o'"),
        (
            {"tiers": "[{input_tokens_lte: 1000, input: 1}, {input_tokens_gt: 500, input: 2}]"},
            "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): overlapping tiers: input <=1000 and input >500",
        ),
        ({"tiers": "[{input_tokens_gt: 10, input_tokens_lte: 5}]"}, "tiers[0]: input_tokens_lte 5 must be greater"),
        ({"tiers": "[{input_tokens_lte: 10, inputt: 5}]"}, "tiers[0]: unknown field 'inputt'"),
        ({"tiers": "[{input_tokens_lte: 10, input: -5}]"}, "tiers[0]: 'input' is negative: -5"),
        ({"time_of_day": '[{window_utc: "25:00-01:00", input: 1}]'}, "time_of_day[0]: 'window_utc' must look like"),
        ({"time_of_day": '[{window_utc: "10:00-10:00", input: 1}]'}, "(UTC, start != end)"),
        (
            {"time_of_day": '[{window_utc: "22:00-02:00", input: 1}, {window_utc: "01:00-03:00", input: 2}]'},
            "overlapping time_of_day windows 22:00-02:00 and 01:00-03:00",
        ),
        ({"service_tiers": "{priority: {input: x}}"}, "service_tiers.priority: 'input' is not a number: 'x'"),
        ({"batch": "{input: 1, speed: 2}"}, "batch: unknown field 'speed'"),
    ],
)
def test_each_problem_has_a_clear_line(fields: dict[str, object], message: str) -> None:
    found = problems(f"prices:\n  - {entry(**fields)}\n")
    assert any(message in p for p in found), found


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = problems(
        f"""
prices:
  - {entry(inptu=5)}
  - {entry(model="gpt-4o-mini", input=-2, currency=None)}
  - {entry(model="o3", effective_from="yesterday")}
"""
    )
    assert found[0] == "book.yaml: prices[0] (openai/gpt-4o 2024-05-13): unknown field 'inptu'"
    assert "book.yaml: prices[1] (openai/gpt-4o-mini 2024-05-13): missing currency" in found
    assert "book.yaml: prices[1] (openai/gpt-4o-mini 2024-05-13): 'input' is negative: -2" in found
    assert any(p.startswith("book.yaml: prices[2] (openai/o3 yesterday): bad date in 'effective_from'") for p in found)
    assert len(found) == 4


def test_duplicate_provider_model_and_date() -> None:
    found = problems(f"prices:\n  - {GOOD}\n  - {entry(input=4)}\n")
    assert found == [
        "book.yaml: prices[1] (openai/gpt-4o 2024-05-13): duplicate of book.yaml: prices[0]: same provider, model and "
        "effective_from (a price change needs a new effective_from)"
    ]


def test_same_instant_written_differently_is_still_a_duplicate() -> None:
    found = problems(f"prices:\n  - {GOOD}\n  - {entry(effective_from='2024-05-13T08:00:00+08:00')}\n")
    assert len(found) == 1
    assert "duplicate of book.yaml: prices[0]" in found[0]


def test_alias_claimed_by_two_models_at_once() -> None:
    found = problems(
        f"""
prices:
  - {entry(model="gpt-4o", aliases="[gpt-4o-latest]")}
  - {entry(model="gpt-4o-2024-08-06", aliases="[gpt-4o-latest]", effective_from="2024-08-06")}
"""
    )
    assert found == [
        "book.yaml: prices[1] (openai/gpt-4o-2024-08-06 2024-08-06): alias 'gpt-4o-latest' is also claimed as alias "
        "by openai/gpt-4o 2024-05-13 (book.yaml: prices[0]) from 2024-08-06; end one entry with effective_to, or drop "
        "the alias from one"
    ]


def test_alias_may_move_once_the_first_claim_has_ended() -> None:
    book = PriceBook.loads(
        f"""
prices:
  - {entry(model="gpt-4o", aliases="[gpt-4o-latest]", effective_to="2024-08-06")}
  - {entry(model="gpt-4o-2024-08-06", aliases="[gpt-4o-latest]", effective_from="2024-08-06", input=2.5)}
"""
    )
    assert len(book.entries) == 2


def test_alias_equal_to_another_model_id_conflicts() -> None:
    found = problems(f"prices:\n  - {entry(aliases='[o3]')}\n  - {entry(model='o3', effective_from='2025-01-01')}\n")
    assert len(found) == 1
    assert "model id 'o3' is also claimed as alias by openai/gpt-4o 2024-05-13" in found[0]


def test_fx_pair_missing_for_a_currency_in_use() -> None:
    text = f"prices:\n  - {entry(currency='CNY')}\n  - {entry(model='o3')}\n"
    assert PriceBook.loads(text)  # without a reporting currency there is nothing to convert to
    assert problems(text, reporting_currency="USD") == [
        "fx: no CNY->USD rate for reporting currency USD, but 1 entries are priced in CNY "
        "(first: book.yaml: prices[0] (openai/gpt-4o 2024-05-13))"
    ]


def test_fx_rates_must_cover_the_first_priced_day() -> None:
    text = f"""
fx:
  - {{from: CNY, to: USD, rate: "0.14", effective_from: 2025-01-01}}
prices:
  - {entry(currency="CNY")}
"""
    found = problems(text, reporting_currency="USD")
    assert found == [
        "fx: the first CNY->USD rate starts 2025-01-01, after book.yaml: prices[0] (openai/gpt-4o 2024-05-13) which "
        "is priced in CNY"
    ]


def test_inverse_fx_pair_satisfies_the_check() -> None:
    text = f"""
fx:
  - {{from: USD, to: CNY, rate: "7.2", effective_from: 2024-01-01}}
prices:
  - {entry(currency="CNY")}
"""
    assert PriceBook.loads(text, reporting_currency="USD").fx_rate(
        "CNY", "USD", PriceBook.loads(text).entries[0].effective_from
    )


@pytest.mark.parametrize(
    ("fx", "message"),
    [
        (
            '{from: CNY, to: USD, rate: "0", effective_from: 2025-01-01}',
            "book.yaml: fx[0] (CNY->USD 2025-01-01): 'rate' must be greater than zero",
        ),
        ("{from: CNY, to: CNY, rate: 1, effective_from: 2025-01-01}", "'from' and 'to' are both CNY"),
        ("{from: CNY, to: USD, effective_from: 2025-01-01}", "fx[0] (CNY->USD 2025-01-01): missing field 'rate'"),
        ("{from: CNY, to: USD, rate: 1, effective_from: 2025-01-01, when: now}", "unknown field 'when'"),
    ],
)
def test_fx_entry_problems(fx: str, message: str) -> None:
    found = problems(f"fx:\n  - {fx}\nprices: []\n")
    assert any(message in p for p in found), found


def test_unreadable_yaml_and_odd_shapes() -> None:
    assert problems("prices: [ {provider: a")[0].startswith("book.yaml: invalid YAML:")
    assert problems("prices: {a: 1}") == ["book.yaml: 'prices' must be a list"]
    assert problems("price: []") == ["book.yaml: unknown top-level key 'price' (expected 'fx' and 'prices')"]
    assert problems("42") == ["book.yaml: expected a mapping with 'fx' and 'prices', or a list of price entries"]
    assert problems("prices: [42]") == ["book.yaml: prices[0]: expected a mapping, got int"]


def test_a_key_written_twice_is_refused() -> None:
    found = problems(
        "prices:\n  - {provider: a, model: b, currency: USD, effective_from: 2025-01-01, input: 1, input: 2}"
    )
    assert len(found) == 1
    assert "found duplicate key 'input'" in found[0]


def test_bare_list_of_entries_is_accepted() -> None:
    book = PriceBook.loads(f"- {GOOD}\n")
    assert [e.price_id for e in book.entries] == ["openai/gpt-4o@2024-05-13T00:00:00Z"]


def test_folder_problems_name_each_file(write_book: Callable[..., Path]) -> None:
    write_book(f"prices:\n  - {GOOD}\n", "openai.yaml")
    write_book(f"prices:\n  - {entry(provider='groq', inptu=1)}\n", "sub/groq.yaml")
    write_book("fx: []\n", "notes.txt")
    with pytest.raises(PriceBookError) as info:
        PriceBook.load(write_book("", "empty.yml").parent)
    assert info.value.problems == ["sub/groq.yaml: prices[0] (groq/gpt-4o 2024-05-13): unknown field 'inptu'"]
    assert "invalid price book (1 problem):" in str(info.value)


def test_duplicates_across_files_of_a_folder(write_book: Callable[..., Path]) -> None:
    write_book(f"prices:\n  - {GOOD}\n", "a.yaml")
    path = write_book(f"prices:\n  - {GOOD}\n", "b.yaml")
    with pytest.raises(PriceBookError) as info:
        PriceBook.load(path.parent)
    assert info.value.problems[0].startswith(
        "b.yaml: prices[0] (openai/gpt-4o 2024-05-13): duplicate of a.yaml: prices[0]"
    )


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(PriceBookError) as info:
        PriceBook.load(tmp_path / "nope.yaml")
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file or folder"]
    with pytest.raises(PriceBookError) as info:
        PriceBook.load(tmp_path)
    assert info.value.problems == [f"{tmp_path}: no *.yaml files in this folder"]
