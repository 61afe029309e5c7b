"""Re-pricing stored events with the current price book, after a correction to it.

Every event in the range is priced again exactly as the gateway prices a request (its provider's
`price_as` name; the reported model, then the model sent upstream, then the requested one; the
tenant's discount; the event's own `ts`). The model sent upstream is not stored: `sent_upstream`
finds it again from the requested model with the gateway's current routing (an alias's target, or
a `provider/model` name without its prefix). Events whose price changed are rewritten in
transactions of at most REWRITE_BATCH events (DuckDB holds a transaction's changes in memory), each
of which also
  - keeps their old costs, currency and price_id in `event_price_audit`, and
  - takes their old costs out of the rollups and adds the new ones, so reports stay consistent.
If one fails, the batches before it stay re-priced; a second run re-prices only what still differs.
It all runs under `storage.work_memory_limit`.
Events dropped by retention are no longer stored raw and keep their old prices in the rollups.
An event's thinking mode is the one it was priced in (`thinking`); events stored before that column
existed (NULL) are taken as in thinking mode when they used reasoning tokens.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from gateway.usage import Usage
from pricing.pricer import EventPricing, candidates
from storage.duckdb_sink import DuckDBSink, read_json_lines
from storage.errors import StorageError
from storage.event import COLUMNS, MONEY
from storage.schema import AUDIT, EVENTS

if TYPE_CHECKING:
    import duckdb
from storage.tabular import decimal_text
from storage.timerange import TimeRange, iso

PRICE_COLUMNS = ("currency", *MONEY, "reporting_currency", "price_id", "pricing_status")
_READ = ("request_id", "ts", "provider", "model", "model_requested", "tenant_id", "input_tokens", "cached_input_tokens",
         "cache_write_tokens", "output_tokens", "reasoning_tokens", "thinking", "service_tier",
         *PRICE_COLUMNS)  # fmt: skip
_TYPES = dict(COLUMNS)
ApplyRollups = Callable[["duckdb.DuckDBPyConnection", str, int], None]
SentUpstream = Callable[[str, str], str | None]  # (provider, requested model) -> the model sent upstream
REWRITE_WAIT = 120.0  # seconds a re-price waits while another replica maintains a shared lake
REWRITE_BATCH = 100_000  # changed events rewritten in one transaction at most


@dataclass(slots=True)
class RepriceResult:
    since: datetime | None
    until: datetime
    examined: int = 0
    changed: int = 0
    dry_run: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few changes, old and new

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": iso(self.since) if self.since else None, "until": iso(self.until), "examined": self.examined,
            "changed": self.changed, "dry_run": self.dry_run, "examples": self.examples,
        }  # fmt: skip


def reprice(
    sink: DuckDBSink,
    pricer: EventPricing,
    rng: TimeRange,
    *,
    price_as: Mapping[str, str] | None = None,
    sent_upstream: SentUpstream | None = None,
    book_version: str | None = None,
    dry_run: bool = False,
) -> RepriceResult:
    result = RepriceResult(rng.since, rng.until, dry_run=dry_run)
    changes = _Changes(sink.workdir)
    try:
        with sink.working_memory():
            _examine(sink, pricer, rng, _Names(price_as or {}, sent_upstream), result, None if dry_run else changes)
            changes.close()
            if changes.files:
                _rewrite_batches(sink, changes.files, book_version)
    finally:
        changes.remove()
    return result


def _examine(
    sink: DuckDBSink,
    pricer: EventPricing,
    rng: TimeRange,
    names: _Names,
    result: RepriceResult,
    changes: _Changes | None,
) -> None:
    """Price every event of `rng` again; count them and the changed ones in `result`, and (unless a dry
    run: `changes` None) write each changed event's new price to `changes`."""
    at = {name: i for i, name in enumerate(_READ)}
    cond, params = "ts < ?", [rng.until]
    if rng.since is not None:
        cond, params = "ts >= ? AND ts < ?", [rng.since, rng.until]
    with sink.reader() as cur:
        cur.execute(f"SELECT {', '.join(_READ)} FROM {EVENTS} WHERE {cond} AND provider IS NOT NULL", params)
        while rows := cur.fetchmany(10_000):
            for row in rows:
                result.examined += 1
                new = _price(row, at, pricer, names)
                old = {c: row[at[c]] for c in PRICE_COLUMNS}
                if new == old:
                    continue
                result.changed += 1
                if len(result.examples) < 5:
                    result.examples.append({"request_id": row[0], "old": _plain(old), "new": _plain(new)})
                if changes is not None:
                    changes.add(orjson.dumps({"request_id": row[0], **_plain(new)}) + b"\n")


def _rewrite_batches(sink: DuckDBSink, batches: list[Path], book_version: str | None) -> None:
    with sink.exclusive(wait=REWRITE_WAIT) as held:
        if not held:
            raise StorageError(
                f"another gateway has been maintaining the store for over {REWRITE_WAIT:.0f} seconds: "
                "nothing was re-priced; try again"
            )
        for batch in batches:
            sink.transaction(functools.partial(_rewrite, changes=batch, book_version=book_version,
                                               apply_rollups=sink.apply_rollups))  # fmt: skip


class _Changes:
    """The new prices of changed events, as JSON lines in files of at most REWRITE_BATCH lines."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: list[Path] = []
        self._out: BinaryIO | None = None
        self._lines = 0

    def add(self, line: bytes) -> None:
        if self._out is None or self._lines == REWRITE_BATCH:
            self.close()
            fd, name = tempfile.mkstemp(prefix="meterway-reprice-", suffix=".jsonl", dir=self.folder)
            self.files.append(Path(name))
            self._out, self._lines = os.fdopen(fd, "wb"), 0
        self._out.write(line)
        self._lines += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def remove(self) -> None:
        self.close()
        for path in self.files:
            path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _Names:
    """The names an event is priced under, as the gateway would price it now."""

    price_as: Mapping[str, str]
    sent_upstream: SentUpstream | None

    def provider(self, provider: str) -> str:
        return self.price_as.get(provider, provider)

    def models(self, provider: str, model: str | None, requested: str | None) -> tuple[str, ...]:
        """The gateway's candidates: the reported model, the model sent upstream, the requested one."""
        upstream = self.sent_upstream(provider, requested) if self.sent_upstream is not None and requested else None
        return candidates(model, upstream, requested)


def _price(row: tuple[Any, ...], at: dict[str, int], pricer: EventPricing, names: _Names) -> dict[str, Any]:
    usage = Usage(**{k: row[at[k]] or 0 for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                                                  "output_tokens", "reasoning_tokens")})  # fmt: skip
    provider = row[at["provider"]]
    thinking = row[at["thinking"]]
    priced = pricer.price_event(
        usage, provider=names.provider(provider), models=names.models(provider, row[at["model"]],
                                                                      row[at["model_requested"]]),
        at=row[at["ts"]], thinking=usage.reasoning_tokens > 0 if thinking is None else thinking,
        tenant=row[at["tenant_id"]], service_tier=row[at["service_tier"]],
    )  # fmt: skip
    return {
        "currency": priced.currency, "input_cost": priced.input_cost, "cached_input_cost": priced.cached_input_cost,
        "cache_write_cost": priced.cache_write_cost, "output_cost": priced.output_cost,
        "total_cost": priced.total_cost, "cost_reporting": priced.cost_reporting,
        "reporting_currency": priced.reporting_currency or pricer.reporting_currency, "price_id": priced.price_id,
        "pricing_status": priced.pricing_status,
    }  # fmt: skip


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: decimal_text(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def _rewrite(
    con: duckdb.DuckDBPyConnection, changes: Path, book_version: str | None, apply_rollups: ApplyRollups
) -> None:
    columns = [("request_id", "VARCHAR"), *((c, _TYPES[c]) for c in PRICE_COLUMNS)]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _reprice AS SELECT * FROM {read_json_lines('?', columns)}", [str(changes)]
    )
    old = ", ".join(f"e.{c}" for c in ("price_id", "pricing_status", "currency", *MONEY, "reporting_currency"))
    new = ", ".join(f"r.{c}" for c in ("price_id", "pricing_status", "currency", "total_cost", "cost_reporting",
                                       "reporting_currency"))  # fmt: skip
    joined = f"{EVENTS} e JOIN _reprice r USING (request_id)"
    con.execute(
        f"INSERT INTO {AUDIT} SELECT e.request_id, ?, ?, {old}, {new} FROM {joined}", [datetime.now(UTC), book_version]
    )
    touched = f"(SELECT e.* FROM {EVENTS} e SEMI JOIN _reprice r USING (request_id)) AS touched"
    apply_rollups(con, touched, -1)
    sets = ", ".join(f"{c} = r.{c}" for c in PRICE_COLUMNS)
    con.execute(f"UPDATE {EVENTS} SET {sets} FROM _reprice r WHERE {EVENTS}.request_id = r.request_id")
    apply_rollups(con, touched, 1)
    con.execute("DROP TABLE _reprice")
