"""Budgets: periods, reservations, settlement, thresholds, currencies, persistence and the 64-way race."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.estimate import count_tokens
from gateway.gate import IMAGE_TOKENS, _answers, _input_estimate, _max_output
from governance.budget_catch_up import catch_up
from governance.budget_fx import fx_problems
from governance.budget_store import JsonFileBudgetStore, MemoryBudgetStore, save_changes
from governance.budgets import BudgetLedger, Refusal, Reservation, matching_budgets
from governance.config import BudgetConfig
from governance.money import Money, estimate_max_cost
from governance.periods import period_bounds
from governance.scope import RequestScope, Selector
from pricing.book import PriceBook
from pricing.pricer import Pricer

NOW = datetime(2025, 6, 11, 15, 30, tzinfo=UTC)  # a Wednesday
BOOK = """
fx:
  - {from: CNY, to: USD, rate: "0.14", effective_from: 2025-01-01}
prices:
  - {provider: demo, model: m, currency: USD, effective_from: 2025-01-01, input: 10, output: 30}
  - {provider: demo, model: thinker, currency: USD, effective_from: 2025-01-01, input: 1, output: 2,
     output_thinking: 8}
  - {provider: cn, model: q, currency: CNY, effective_from: 2025-01-01, input: 2, output: 8}
"""


def usd(text: str) -> Money:
    return Money(Decimal(text), "USD")


def fx(src: str, dst: str, at: datetime) -> Decimal | None:
    return PriceBook.loads(BOOK).fx_rate(src, dst, at)


def budget(limit: str, **kw: object) -> BudgetConfig:
    fields: dict[str, object] = {"name": "b", "limit": Decimal(limit), "currency": "USD", "period": "day", "hard": True}
    fields.update(kw)
    return BudgetConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("day", datetime(2025, 6, 11, tzinfo=UTC), datetime(2025, 6, 12, tzinfo=UTC)),
        ("week", datetime(2025, 6, 9, tzinfo=UTC), datetime(2025, 6, 16, tzinfo=UTC)),
        ("month", datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)),
    ],
)
def test_period_bounds_are_utc(period: str, start: datetime, end: datetime) -> None:
    assert period_bounds(period, NOW) == (start, end)
    shanghai = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))  # same instant, other zone
    assert period_bounds(period, shanghai) == (start, end)


def test_december_and_naive_times() -> None:
    assert period_bounds("month", datetime(2025, 12, 31, 23, tzinfo=UTC))[1] == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds("day", datetime(2025, 1, 1))


def test_reserve_settle_release() -> None:
    ledger = BudgetLedger([budget("1")], fx, clock=lambda: NOW)
    b = ledger.budgets
    first = ledger.reserve("r1", b, usd("0.6"))
    assert isinstance(first, Reservation)
    refused = ledger.reserve("r2", b, usd("0.6"))
    assert isinstance(refused, Refusal) and refused.budget == "b"
    assert "budget 'b' (everything, per day) has no room for this request" in refused.message
    assert "0.6 of 1 USD is spent or reserved" in refused.message
    assert "it resets at 2025-06-12T00:00:00Z" in refused.message and refused.resets_at.tzinfo is not None
    ledger.settle(first, usd("0.25"))
    (status,) = ledger.status()
    assert (status.spent, status.reserved, status.remaining) == (Decimal("0.25"), Decimal(0), Decimal("0.75"))
    second = ledger.reserve("r2", b, usd("0.6"))
    assert isinstance(second, Reservation)
    ledger.release(second)
    ledger.release(second)  # twice is harmless
    assert ledger.settle(second, usd("1")) == []  # already released: nothing is charged
    assert ledger.status()[0].spent == Decimal("0.25") and ledger.status()[0].reserved == 0
    with pytest.raises(ValueError, match="already holds"):
        ledger.reserve("r3", b, usd("0.1"))
        ledger.reserve("r3", b, usd("0.1"))


def test_soft_budgets_never_refuse_and_exhausted_hard_budgets_refuse_free_requests() -> None:
    soft = budget("1", name="soft", hard=False)
    hard = budget("1", name="hard")
    ledger = BudgetLedger([soft, hard], fx, clock=lambda: NOW)
    ledger.charge([soft, hard], usd("1"), NOW)
    assert isinstance(ledger.reserve("a", [soft], usd("5")), Reservation)
    assert isinstance(ledger.reserve("b", [hard], None), Refusal)  # unpriced request, budget at its limit


def test_thresholds_fire_once_per_period_and_threshold() -> None:
    clock = [NOW]
    b = budget("10", soft=(Decimal("0.5"), Decimal("0.8"), Decimal("1")), hard=False, selector=Selector(tenant="acme"))
    ledger = BudgetLedger([b], fx, clock=lambda: clock[0])
    fired = []
    for i in range(12):
        r = ledger.reserve(f"r{i}", [b], usd("1"))
        assert isinstance(r, Reservation)
        fired += [(c.threshold, c.spent) for c in ledger.settle(r, usd("1"))]
    assert fired == [(Decimal("0.5"), Decimal(5)), (Decimal("0.8"), Decimal(8)), (Decimal("1"), Decimal(10))]
    clock[0] = NOW + timedelta(days=1)  # the next day is a new period
    r = ledger.reserve("next", [b], usd("6"))
    assert isinstance(r, Reservation)
    (crossing,) = ledger.settle(r, usd("6"))
    assert crossing.threshold == Decimal("0.5") and crossing.period_start == datetime(2025, 6, 12, tzinfo=UTC)
    assert crossing.message() == (
        "budget 'b' (tenant acme) passed 50%: 6 of 10 USD spent this period; resets at 2025-06-13T00:00:00Z"
    )


def test_costs_are_converted_into_the_budget_currency() -> None:
    cny = budget("10", currency="CNY")
    ledger = BudgetLedger([cny], fx, clock=lambda: NOW)
    r = ledger.reserve("r", [cny], usd("0.7"))  # 0.7 USD = 5 CNY at 0.14
    assert isinstance(r, Reservation) and r.holds[0].amount == Decimal(5)
    assert isinstance(ledger.reserve("s", [cny], usd("0.71")), Refusal)
    ledger.settle(r, Money(Decimal(3), "CNY"))
    assert ledger.status()[0].spent == 3
    eur = budget("10", name="eur", currency="EUR")
    refused = BudgetLedger([eur], fx, clock=lambda: NOW).reserve("x", [eur], usd("1"))
    assert isinstance(refused, Refusal) and "no FX rate from USD to EUR" in refused.message


def test_a_budget_needs_rates_from_the_currencies_of_the_entries_its_filter_reaches() -> None:
    book = PriceBook.loads(BOOK)
    price_as = {"demo": "demo", "china": "cn"}
    eur = {"currency": "EUR"}
    assert fx_problems([budget("5", **eur)], book, price_as, NOW) == [
        "budgets: 'b' is in EUR, but the price book has no CNY->EUR or USD->EUR rate (its FX rates: CNY->USD), "
        "so the requests it applies to priced in CNY or USD would be refused; add the rate to the book's fx, "
        "or use a currency it converts to"
    ]
    cny_only = budget("5", **eur, selector=Selector(provider="china"), hard=False)
    assert fx_problems([cny_only], book, price_as, NOW) == [
        "budgets: 'b' is in EUR, but the price book has no CNY->EUR rate (its FX rates: CNY->USD), so the requests "
        "it applies to priced in CNY would not count against it; add the rate to the book's fx, or use a currency "
        "it converts to"
    ]
    assert fx_problems([budget("5", currency="CNY"), budget("5", currency="USD")], book, price_as, NOW) == []
    unpriced = [
        budget("5", **eur, selector=Selector(model="gpt-*")),
        budget("5", **eur, selector=Selector(provider="o")),
    ]
    assert fx_problems(unpriced, book, price_as, NOW) == []  # no entry prices what they apply to


def test_matching_budgets_by_filter() -> None:
    acme = budget("1", name="acme", selector=Selector(tenant="acme"))
    gpt = budget("1", name="gpt", selector=Selector(model="gpt-*"))
    everything = budget("1", name="all")
    scope = RequestScope(tenant="acme", provider="openai", model="o3")
    assert [b.name for b in matching_budgets([acme, gpt, everything], scope)] == ["acme", "all"]


def test_state_survives_a_restart_in_a_json_file(tmp_path: Path) -> None:
    b = budget("10", soft=(Decimal("0.5"),))
    store = JsonFileBudgetStore(tmp_path / "budgets.json")
    ledger = BudgetLedger([b], fx, state=store.load(), clock=lambda: NOW)
    r = ledger.reserve("done", [b], usd("6"))
    assert isinstance(r, Reservation)
    assert ledger.settle(r, usd("6"))
    open_one = ledger.reserve("open", [b], usd("2"))
    assert isinstance(open_one, Reservation)
    store.save(ledger.snapshot())
    assert (tmp_path / "budgets.json").stat().st_mode & 0o777 == 0o600

    again = BudgetLedger([b], fx, state=store.load(), clock=lambda: NOW + timedelta(minutes=1))
    (status,) = again.status()
    assert (status.spent, status.reserved) == (Decimal(6), Decimal(2))
    again_open = again.reserve("more", [b], usd("1"))
    assert isinstance(again_open, Reservation)
    assert again.settle(again_open, usd("1")) == []  # 50% fired before the restart: not again
    assert isinstance(again.reserve("big", [b], usd("1.5")), Refusal)  # 6 + 1 spent, 2 still held

    later = BudgetLedger([b], fx, state=store.load(), clock=lambda: NOW + timedelta(hours=1))
    assert later.status()[0].reserved == 0  # a reservation from before a crash does not hold forever


async def test_save_changes_writes_only_when_something_changed() -> None:
    b = budget("10")
    store = MemoryBudgetStore()
    ledger = BudgetLedger([b], fx, clock=lambda: NOW)
    saved = await save_changes(ledger, store, -1)
    assert store.saves == 1 and await save_changes(ledger, store, saved) == saved and store.saves == 1
    ledger.charge([b], usd("1"), NOW)
    await save_changes(ledger, store, saved)
    assert store.saves == 2 and store.state.spend[("b", datetime(2025, 6, 11, tzinfo=UTC))].spent == 1


def test_stale_reservations_expire() -> None:
    b = budget("1")
    ledger = BudgetLedger([b], fx, clock=lambda: NOW, reservation_ttl=timedelta(minutes=5))
    assert isinstance(ledger.reserve("old", [b], usd("1"), at=NOW - timedelta(minutes=6)), Reservation)
    assert ledger.expire() == 1 and ledger.status()[0].reserved == 0


def test_a_request_that_outlives_its_reservation_is_still_charged() -> None:
    """A stream longer than the reservation's TTL: the hold is released, the real cost still counts, once."""
    b = budget("10")
    ledger = BudgetLedger([b], fx, clock=lambda: NOW, reservation_ttl=timedelta(minutes=15))
    long = ledger.reserve("long", [b], usd("1"), at=NOW - timedelta(minutes=16))
    assert isinstance(long, Reservation) and ledger.expire() == 1
    assert ledger.status()[0].reserved == 0 and ledger.status()[0].spent == 0
    ledger.settle(long, usd("4"))
    assert ledger.status()[0].spent == 4
    ledger.settle(long, usd("4"))
    assert ledger.status()[0].spent == 4, "settled once"


def test_estimate_max_cost_uses_max_tokens_the_dearest_output_and_the_discount() -> None:
    pricer = Pricer(book=PriceBook.loads(BOOK), discounts={"acme": Decimal(20)})
    assert estimate_max_cost(pricer, "demo", "m", 1000, 3000, NOW) == usd("0.1")  # 0.01 + 0.09
    assert estimate_max_cost(pricer, "demo", "m", 1000, 3000, NOW, "acme") == usd("0.08")
    default = estimate_max_cost(pricer, "demo", "m", 0, None, NOW, default_max_output_tokens=1000)
    assert default == usd("0.03")
    assert estimate_max_cost(pricer, "demo", "thinker", 0, 1_000_000, NOW) == usd("8")  # thinking price
    assert estimate_max_cost(pricer, "cn", "q", 1_000_000, 0, NOW) == Money(Decimal(2), "CNY")
    assert estimate_max_cost(pricer, "demo", "unknown", 10, 10, NOW) is None


def test_a_request_for_a_dearer_service_tier_reserves_at_that_tier() -> None:
    """A request asking for `service_tier: priority` is billed at priority rates: reserving at standard ones
    would let concurrent priority requests walk through a hard budget."""
    book = Path(__file__).resolve().parents[2] / "pricing" / "book" / "openai.yaml"
    pricer, at = Pricer(book=PriceBook.loads(book.read_text())), datetime(2026, 1, 1, tzinfo=UTC)
    assert estimate_max_cost(pricer, "openai", "gpt-4.1", 1_000_000, 1_000_000, at) == usd("10")  # 2 + 8
    priority = estimate_max_cost(pricer, "openai", "gpt-4.1", 1_000_000, 1_000_000, at, service_tier="priority")
    assert priority == usd("17.5")  # the book's priority rates: 3.5 in, 14 out per million


async def test_64_concurrent_requests_cannot_overshoot_a_budget() -> None:
    pricer = Pricer(book=PriceBook.loads(BOOK))
    per_request = estimate_max_cost(pricer, "demo", "m", 1000, 3000, NOW)
    assert per_request == usd("0.1")
    limit = Decimal("1.05")  # USD: room for 10 worst-case requests
    b = budget("7.5", currency="CNY")  # the same limit in the budget's own currency (1 CNY = 0.14 USD)
    ledger = BudgetLedger([b], fx, clock=lambda: NOW)
    rng = random.Random(6)
    start = asyncio.Barrier(64)

    async def request(i: int) -> tuple[str, Decimal]:
        await start.wait()
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        held = ledger.reserve(f"req-{i}", ledger.matching(RequestScope(tenant="t")), per_request)
        if isinstance(held, Refusal):
            assert held.budget == "b" and "resets at 2025-06-12T00:00:00Z" in held.message
            return "refused", Decimal(0)
        for _ in range(rng.randrange(1, 4)):
            await asyncio.sleep(0)  # the upstream call
        actual = Decimal("0.01") + Decimal("0.00003") * rng.randrange(1500, 3001)  # up to max_tokens
        ledger.settle(held, Money(actual, "USD"))
        return "settled", actual

    results = await asyncio.gather(*(request(i) for i in range(64)))
    settled = [cost for outcome, cost in results if outcome == "settled"]
    refused = [outcome for outcome, _ in results if outcome == "refused"]
    assert len(settled) + len(refused) == 64
    assert 10 <= len(settled) < 64 and len(refused) > 0
    total = sum(settled, Decimal(0))
    assert total <= limit + per_request.amount  # at most one request's cost over
    (status,) = ledger.status()
    assert status.reserved == 0
    assert abs(status.spent * Decimal("0.14") - total) < Decimal("1e-9")
    assert status.spent <= b.limit


def test_catch_up_charges_what_ended_after_the_saved_state_once() -> None:
    """A restored reservation is settled by its event; an event without one is charged to its budgets."""
    b = budget("10", selector=Selector(tenant="acme"))
    saved = BudgetLedger([b], fx, clock=lambda: NOW)
    open_one = saved.reserve("open", [b], usd("2"), at=NOW - timedelta(seconds=5))
    assert isinstance(open_one, Reservation)
    state = saved.snapshot()
    assert state.saved_at == NOW
    asked: list[list[object]] = []

    def query(sql: str, params: list[object]) -> list[tuple[object, ...]]:
        asked.append(params)
        return [
            ("open", NOW - timedelta(seconds=5), "acme", None, None, "openai", "m", "m", Decimal("1.5"), "USD"),
            ("unreserved", NOW, "acme", None, None, "openai", "m", "m", Decimal("0.5"), "USD"),
            ("elsewhere", NOW, "globex", None, None, "openai", "m", "m", Decimal("7"), "USD"),
        ]

    later = BudgetLedger([b], fx, state=state, clock=lambda: NOW + timedelta(seconds=1))
    assert later.status()[0].reserved == 2
    assert catch_up(later, query) == 3 and asked == [[NOW - timedelta(days=1), NOW]]
    assert (later.status()[0].spent, later.status()[0].reserved) == (Decimal("2.0"), 0)
    fresh = BudgetLedger([b], fx, clock=lambda: NOW)  # nothing saved yet: the period's stored requests count
    assert catch_up(fresh, query) == 3 and asked[-1] == [NOW.replace(hour=0, minute=0, second=0, microsecond=0)] * 2
    assert fresh.status()[0].spent == Decimal("2.0")


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "Summarize the quarterly revenue figures for the board. " * 40}]},
        {"messages": [{"role": "user", "content": "请把这份合同的主要条款总结一下，并指出付款期限和违约责任。" * 40}]},
        {"messages": [{"role": "user", "content": "hi"}],
         "tools": [{"type": "function", "function": {"name": f"lookup_{i}", "description": "Find an order by id " * 5,
                    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}
                   for i in range(30)]},
    ],
)  # fmt: skip
def test_the_input_estimate_is_not_below_the_tokens_billed(body: dict[str, object]) -> None:
    """What a hard budget reserves must cover English, Chinese and tool definitions (billed as input)."""
    call = SimpleNamespace(body=body)
    billed = count_tokens(json.dumps(body, ensure_ascii=False))
    assert _input_estimate(call) >= billed  # type: ignore[arg-type]


def test_the_output_reserved_covers_every_answer_asked_for() -> None:
    assert _max_output({"max_tokens": 100, "n": 5}) == 500
    assert _max_output({"generationConfig": {"maxOutputTokens": 50, "candidateCount": 3}}) == 150
    assert _max_output({"max_tokens": 100}) == 100 and _max_output({"n": 2}) is None
    assert _answers({"n": 3}) == 3 and _answers({"generationConfig": {"candidateCount": 2}}) == 2
    pricer = Pricer(book=PriceBook.loads(BOOK))
    three = estimate_max_cost(pricer, "demo", "m", 0, None, NOW, answers=3, default_max_output_tokens=1000)
    assert three == usd("0.09")  # no limit: the default for each answer (0.03 for one)


PIXELS = base64.b64encode(os.urandom(600_000)).decode()  # an 800 KB base64 image: 400k tokens by its size
URL = "https://example.com/a.png"


def _user(*parts: dict[str, object]) -> list[dict[str, object]]:
    return [{"role": "user", "content": list(parts)}]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": _user({"type": "text", "text": "What is this?"},
                           {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXELS}"}})},
        {"input": _user({"type": "input_image", "image_url": URL})},
        {"messages": _user({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXELS}})},
        {"contents": [{"parts": [{"text": "What?"}, {"inlineData": {"mimeType": "image/png", "data": PIXELS}}]}]},
        {"messages": [{"role": "user", "content": "What is this?", "images": [PIXELS]}]},
        {"input": {"messages": _user({"image": URL}, {"text": "What is this?"})}},
        {"Messages": [{"Role": "user", "Contents": [{"Type": "image_url", "ImageUrl": {"Url": URL}}]}]},
    ],
    ids=["openai-base64", "responses-url", "anthropic", "gemini", "ollama", "dashscope", "hunyuan"],
)  # fmt: skip
def test_an_image_is_estimated_at_the_most_one_image_is_billed_whatever_its_encoding(body: dict[str, object]) -> None:
    """Not by the size of its base64 (a vision request near a hard budget would be refused), nor as a short URL."""
    estimate = _input_estimate(SimpleNamespace(body=body))  # type: ignore[arg-type]
    assert IMAGE_TOKENS <= estimate < IMAGE_TOKENS + 200
