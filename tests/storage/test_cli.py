"""`meterway ingest|report|bill|export|reprice` on the DuckDB file, in process."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest
import yaml

from gateway.cli import main
from tests.storage.helpers import BOOK, rollup_mismatches, write_book

RECORDS = [
    {"tenant_id": "acme", "provider": "acme", "model": "m1", "prompt_tokens": 1000, "completion_tokens": 500,
     "timestamp": "2025-03-10T10:30:00Z", "feature": "chat"},
    {"tenant_id": "acme", "provider": "acme", "model": "m2", "input_tokens": 2000, "output_tokens": 100,
     "ts": "2025-03-11T08:00:00Z", "feature": "search"},
    {"tenant_id": "globex", "provider": "acme", "model": "m1", "input_tokens": 100, "output_tokens": 10,
     "ts": "2025-03-31T23:59:00Z"},
    {"tenant_id": "globex", "provider": "acme", "model": "m1", "input_tokens": 100, "output_tokens": 10,
     "ts": "2025-04-01T00:00:00Z"},
]  # fmt: skip


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    book = write_book(tmp_path / "book")
    doc = {"storage": {"path": str(tmp_path / "events.duckdb")}, "pricing": {"book": str(book)}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "config.yaml"


def ingest(cfg: Path, capsys: pytest.CaptureFixture[str], lines: list[bytes]) -> tuple[int, str, str]:
    path = cfg.parent / "usage.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code = main(["ingest", str(path), "--config", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def stored(cfg: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert ingest(cfg, capsys, [orjson.dumps(r) for r in RECORDS])[0] == 0
    return cfg


def test_ingest_reports_rejected_lines_and_is_idempotent(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [orjson.dumps(RECORDS[0]), b"{not json", orjson.dumps({**RECORDS[1], "cached_input_tokens": 5000}),
             b"", orjson.dumps(RECORDS[2])]  # fmt: skip
    code, out, err = ingest(cfg, capsys, lines)
    assert code == 1
    assert "ingested 2 of 4 records" in out and "(2 new, 0 already stored)" in out
    assert err.splitlines()[:2] == [
        "line 2: not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        "line 3: cached_input_tokens + cache_write_tokens: must not exceed input_tokens (they are part of it)",
    ]
    code, out, _ = ingest(cfg, capsys, [lines[0], lines[4]])
    assert code == 0 and "(0 new, 2 already stored)" in out
    with duckdb.connect(str(cfg.parent / "events.duckdb"), read_only=True) as con:
        row = con.execute("SELECT total_cost, currency, usage_source, price_id FROM llm_usage_events "
                          "WHERE input_tokens = 1000").fetchone()  # fmt: skip
    assert row == (Decimal("0.002"), "USD", "provider", "acme/m1@2024-01-01T00:00:00Z")


def test_report_formats(stored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(stored), "--by", "tenant", "--since", "2025-03-01", "--until", "2025-04-01",
                 "--format", "json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert [(r["tenant"], r["requests"]) for r in data["data"]] == [("acme", 2), ("globex", 1)]
    assert data["data"][0]["costs"] == {"CNY": "0.022", "USD": "0.002"}  # 2000*10/1M + 100*20/1M CNY
    assert data["data"][0]["cost_reporting"] == "0.00508"  # 0.002 + 0.022 * 0.14
    assert main(["report", "--config", str(stored), "--by", "day", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["day"] for r in rows] == ["2025-03-10", "2025-03-11", "2025-03-31", "2025-04-01"]
    assert main(["report", "--config", str(stored), "--by", "model", "--tenant", "acme"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["model", "requests", "errors", "unpriced", "input_tokens", "output_tokens",
                                "total_tokens", "costs", "cost_reporting"]  # fmt: skip
    assert table[3].split()[:3] == ["m2", "1", "0"] and table[3].split()[-1] == "0.003080"
    unknown = {**RECORDS[1], "model": "m9", "ts": "2025-03-12T08:00:00Z"}  # no entry in the book
    assert ingest(stored, capsys, [orjson.dumps(unknown)])[0] == 0
    assert main(["report", "--config", str(stored), "--by", "model", "--tenant", "acme"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows["m9"][1:4] == ["1", "0", "1"], "an unpriced model shows as unpriced, not as a cost of zero"


def test_report_rejects_a_bad_time_in_one_line(stored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(stored), "--since", "soon"]) == 2
    assert capsys.readouterr().err.startswith("error: --since: expected an ISO 8601 date or time")
    assert main(["report", "--config", str(stored), "--since", "999999w"]) == 2
    assert capsys.readouterr().err.startswith("error: --since: '999999w' is out of range")
    assert main(["report", "--config", str(stored), "--limit", "\u00b2"]) == 2
    assert capsys.readouterr().err.startswith("error: --limit: expected a whole number")
    assert main(["bill", "--config", str(stored), "--month", "0000-01"]) == 2
    assert capsys.readouterr().err.startswith("error: --month: expected a month like 2025-03")


def test_bill_for_a_month(stored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bill", "--config", str(stored), "--month", "2025-03", "--format", "json"]) == 0
    bill = json.loads(capsys.readouterr().out)
    assert bill["month"] == "2025-03" and bill["total_cost"] == "0.0052"
    acme, globex = bill["tenants"]
    assert (acme["tenant_id"], acme["requests"], len(acme["lines"])) == ("acme", 2, 2)
    assert (globex["tenant_id"], globex["requests"], globex["cost_reporting"]) == ("globex", 1, "0.00012")
    assert main(["bill", "--config", str(stored), "--month", "2025-03"]) == 0
    out = capsys.readouterr().out
    assert "billing for 2025-03" in out and out.rstrip().endswith("total: 0.0052 USD")


def test_export_csv_and_parquet(stored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = stored.parent / "march.csv"
    assert main(["export", "--config", str(stored), "--since", "2025-03-01", "--until", "2025-04-01",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert (
        len(rows) == 3 and rows[0]["total_cost"] == "0.002000000000" and "exported 3 events" in capsys.readouterr().err
    )
    pq = stored.parent / "all.parquet"
    assert main(["export", "--config", str(stored), "--format", "parquet", "--out", str(pq)]) == 0
    with duckdb.connect() as con:
        got = con.execute(f"SELECT count(*), sum(total_cost), typeof(sum(total_cost)) FROM '{pq}'").fetchone()
    assert got == (4, Decimal("0.02424"), "DECIMAL(38,12)")


def test_reprice_after_a_book_correction_keeps_an_audit_and_consistent_rollups(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_book(
        stored.parent / "book",
        BOOK.replace(
            "model: m1, currency: USD, effective_from: 2024-01-01, input: 1",
            "model: m1, currency: USD, effective_from: 2024-01-01, input: 3",
        ),
    )
    args = ["reprice", "--config", str(stored), "--since", "2025-03-01", "--until", "2025-04-01"]
    assert main([*args, "--dry-run"]) == 0
    assert "3 events examined, would change 2" in capsys.readouterr().out
    db = stored.parent / "events.duckdb"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "3 events examined, changed 2" in out
        and "0.002 USD = 0.002 USD (acme/m1@2024-01-01T00:00:00Z) -> 0.004 USD = 0.004 USD" in out
    )
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT total_cost FROM llm_usage_events WHERE input_tokens = 1000").fetchone() == (
            Decimal("0.004"),
        )
        audit = con.execute("SELECT old_total_cost, new_total_cost, old_price_id FROM event_price_audit "
                            "ORDER BY old_total_cost DESC").fetchall()  # fmt: skip
        assert audit[0] == (Decimal("0.002"), Decimal("0.004"), "acme/m1@2024-01-01T00:00:00Z") and len(audit) == 2
        assert con.execute("SELECT total_cost FROM llm_usage_events WHERE ts = '2025-04-01'").fetchone() == (
            Decimal("0.00012"),
        )  # outside the range: untouched
        assert set(rollup_mismatches(con).values()) == {0}
    assert main(args) == 0
    assert "changed 0" in capsys.readouterr().out


HYBRID = (
    BOOK + "  - {provider: acme, model: q3, currency: USD, effective_from: 2024-01-01, input: 1, output: 2, "
    "output_thinking: 8}\n"
)


def test_reprice_keeps_the_thinking_mode_each_event_was_priced_in(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A thinking-mode request whose provider reported no reasoning tokens stays at the thinking price;
    events stored before the mode was kept (NULL) count as thinking when they used reasoning tokens."""
    write_book(cfg.parent / "book", HYBRID)
    base = {"tenant_id": "acme", "provider": "acme", "model": "q3", "input_tokens": 0, "ts": "2025-03-10T10:00:00Z"}
    records = [
        {**base, "request_id": "thinking", "output_tokens": 1000, "thinking": True},
        {**base, "request_id": "plain", "output_tokens": 1000},
        {**base, "request_id": "legacy-reasoning", "output_tokens": 1000, "reasoning_tokens": 400},
        {**base, "request_id": "legacy-plain", "output_tokens": 1000},
    ]
    assert ingest(cfg, capsys, [orjson.dumps(r) for r in records])[0] == 0
    db = cfg.parent / "events.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE llm_usage_events SET thinking = NULL WHERE request_id LIKE 'legacy-%'")
        assert con.execute("SELECT request_id, thinking, output_cost FROM llm_usage_events WHERE thinking IS NOT NULL "
                           "ORDER BY request_id").fetchall() == [
            ("plain", False, Decimal("0.002")), ("thinking", True, Decimal("0.008"))]  # fmt: skip
    write_book(cfg.parent / "book", HYBRID.replace("output: 2, output_thinking: 8", "output: 3, output_thinking: 9"))
    assert main(["reprice", "--config", str(cfg), "--since", "2025-03-01", "--until", "2025-04-01"]) == 0
    assert "4 events examined, changed 4" in capsys.readouterr().out
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT request_id, output_cost FROM llm_usage_events ORDER BY request_id").fetchall() == [
            ("legacy-plain", Decimal("0.003")), ("legacy-reasoning", Decimal("0.009")),
            ("plain", Decimal("0.003")), ("thinking", Decimal("0.009")),
        ]  # fmt: skip


TIERED = BOOK + (
    "  - {provider: acme, model: t1, currency: USD, effective_from: 2024-01-01, input: 1, output: 2, "
    "service_tiers: {flex: {input: 0.5, output: 1}}}\n"
)


def test_ingest_and_reprice_price_each_event_at_its_service_tier(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_book(cfg.parent / "book", TIERED)
    base = {"provider": "acme", "model": "t1", "input_tokens": 0, "output_tokens": 1000, "ts": "2025-03-10T10:00:00Z"}
    records = [{**base, "request_id": "flex", "service_tier": "flex"}, {**base, "request_id": "standard"}]
    assert ingest(cfg, capsys, [orjson.dumps(r) for r in records])[0] == 0
    db = cfg.parent / "events.duckdb"
    query = "SELECT request_id, service_tier, output_cost FROM llm_usage_events ORDER BY request_id"
    with duckdb.connect(str(db)) as con:
        assert con.execute(query).fetchall() == [
            ("flex", "flex", Decimal("0.001")),
            ("standard", None, Decimal("0.002")),
        ]
    write_book(cfg.parent / "book", TIERED.replace("output: 2,", "output: 4,").replace("output: 1}", "output: 3}"))
    assert main(["reprice", "--config", str(cfg), "--since", "2025-03-01", "--until", "2025-04-01"]) == 0
    with duckdb.connect(str(db)) as con:
        assert con.execute(query).fetchall() == [
            ("flex", "flex", Decimal("0.003")),
            ("standard", None, Decimal("0.004")),
        ]


def test_reading_commands_need_stored_events(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(cfg)]) == 2
    assert "no events stored yet" in capsys.readouterr().err
