"""Where the storage commands get their data: the DuckDB file itself, or a running gateway's admin API.

DuckDB lets one process open a file for writing, and no other process may open it meanwhile. So
`meterway report|bill|export|ingest|reprice` open the file themselves when no gateway holds it
(after loading any journal a stopped gateway left behind), and otherwise go through the running
gateway's admin API: at `--url`, by default the configured server address, with the admin key
from the variable `auth.admin_key_env` names (MW_ADMIN_KEY when the config names none, or when
`--url` is given and there is no config file). Both run the same query, ingest and re-price code,
so they answer alike.
With `storage.backend: ducklake` the commands always open the lake themselves: it has many writers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import orjson

from gateway.admin import admin_key_variable
from gateway.config import Config
from gateway.costing import EventPricer
from storage import queries
from storage.errors import StorageError, StorageLocked, StoreError
from storage.export import export_events
from storage.folders import file_in_the_way
from storage.ingest import Invalid, Rejected, UsageIngestor, read_jsonl
from storage.journal import SpoolLock, claim_orphans, closed_segments
from storage.params import filters_of, limit_of, range_of, span_for
from storage.reprice import reprice
from storage.runtime import price_as, sent_upstream
from storage.sinks import open_sink
from storage.tabular import Table
from storage.timerange import QueryError, parse_month

DEFAULT_KEY_VARIABLE = "MW_ADMIN_KEY"

CHUNK = 5_000  # records per ingest batch (and per POST to a gateway)


@dataclass(slots=True)
class Ingested:
    records: int = 0
    accepted: int = 0
    new: int | None = None  # unknown when a gateway journals them
    rejected: list[Rejected] = field(default_factory=list)


class Store(Protocol):
    where: str

    def report(self, by: str, params: dict[str, str]) -> tuple[dict[str, Any], Table]: ...
    def bill(self, month: str) -> tuple[dict[str, Any], Table]: ...
    def export(self, fmt: str, params: dict[str, str], out: IO[bytes]) -> int: ...
    def ingest(self, path: Path) -> Ingested: ...
    def reprice(self, params: dict[str, str], dry_run: bool) -> dict[str, Any]: ...
    def close(self) -> None: ...


@contextlib.contextmanager
def open_store(config: Config, url: str | None = None, must_exist: bool = True) -> Iterator[Store]:
    """The file when it is free, else the gateway that holds it; StoreError says why neither works."""
    store: Store
    if url:
        store = RemoteStore(url, key_variable(config))
    else:
        path = config.storage.path
        if must_exist and config.storage.backend == "duckdb" and not path.exists():
            if (blocker := file_in_the_way(path)) is not None:
                raise StoreError(f"storage.path {path}: {blocker} is a file, not a folder")
            raise StoreError(f"no events stored yet: {path} does not exist (check storage.path in the config)")
        try:
            store = LocalStore(config)
        except StorageLocked as locked:
            store = RemoteStore(gateway_url(config), key_variable(config), locked=str(locked))
        except StorageError as exc:
            raise StoreError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def key_variable(config: Config) -> str:
    """The environment variable holding the admin key a command sends to a gateway."""
    return admin_key_variable(config.raw) or DEFAULT_KEY_VARIABLE


def gateway_url(config: Config) -> str:
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "*") else "[::1]" if host == "::" else host
    return f"http://{host}:{config.server.port}"


class LocalStore:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sink = open_sink(config.storage)
        self.where = self.sink.location
        self._pricer: EventPricer | None = None
        self._replay_journal()

    def _replay_journal(self) -> None:
        """Events a stopped gateway journaled but did not load yet; the gateway would load them at start.
        Left alone while a running gateway loads the journal (a DuckLake lets the command in meanwhile)."""
        spool = self.config.storage.spool
        lock = SpoolLock.try_take(spool) if spool.is_dir() else None
        if lock is None:
            return
        try:
            claim_orphans(spool)
            for segment in closed_segments(spool):
                self.sink.load_segments([segment])
                segment.unlink()
        finally:
            lock.release()

    @property
    def pricer(self) -> EventPricer:
        if self._pricer is None:
            from pricing.book import PriceBookError

            try:
                self._pricer = EventPricer.from_config(self.config)
            except PriceBookError as exc:
                raise StoreError("the price book does not load: " + "; ".join(exc.problems)) from None
        return self._pricer

    @property
    def price_as(self) -> dict[str, str]:
        return price_as(self.config)

    def report(self, by: str, params: dict[str, str]) -> tuple[dict[str, Any], Table]:
        rng = range_of(params, span_for(by))
        with self.sink.reader() as cur:
            table = queries.costs_by(cur, by, rng, filters_of(params), limit_of(params, None))
        return {**rng.as_dict(), "data": table.records()}, table

    def bill(self, month: str) -> tuple[dict[str, Any], Table]:
        with self.sink.reader() as cur:
            data = queries.bill(cur, parse_month(month), self.config.pricing.reporting_currency)
        return data, queries.bill_table(data)

    def export(self, fmt: str, params: dict[str, str], out: IO[bytes]) -> int:
        rng = range_of(params, exact=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"events.{fmt}"
            count = export_events(self.sink, rng, fmt, path)
            with path.open("rb") as data:
                shutil.copyfileobj(data, out)
        return count

    def ingest(self, path: Path) -> Ingested:
        ingestor = UsageIngestor(self.pricer, self.price_as, not_before=self.sink.watermark)
        result = Ingested(new=0)
        for chunk in _chunks(read_jsonl(path)):
            batch = ingestor.build(chunk)
            result.records += len(chunk)
            result.accepted += len(batch.events)
            result.rejected += batch.rejected
            if batch.events:
                result.new = (result.new or 0) + self.sink.load_events(batch.events)
        return result

    def reprice(self, params: dict[str, str], dry_run: bool) -> dict[str, Any]:
        rng = range_of(params, exact=True)
        pricer = self.pricer
        try:
            result = reprice(self.sink, pricer, rng, price_as=self.price_as, sent_upstream=sent_upstream(self.config),
                             book_version=pricer.pricer.version, dry_run=dry_run)  # fmt: skip
        except StorageError as exc:  # a shared lake held by another replica's maintenance for too long
            raise StoreError(str(exc)) from None
        return result.as_dict()

    def close(self) -> None:
        self.sink.close()


class RemoteStore:
    def __init__(self, url: str, key_variable: str = DEFAULT_KEY_VARIABLE, locked: str | None = None) -> None:
        self.where = url
        self.locked = locked
        self.key_variable = key_variable
        key = os.environ.get(key_variable)
        self.sends_key = bool(key)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(600, connect=5))

    def _get(self, path: str, params: dict[str, str]) -> Any:
        return self._call("GET", path, params=params).json()

    def _call(self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            if self.locked:  # the file is busy and the gateway that has it was the way in
                why = f"{self.locked}, and no gateway answers at {self.where}"
                raise StoreError(f"{why} (stop the other process, start the gateway, or pass --url)") from None
            raise StoreError(f"no gateway answers at {self.where}: {exc} (is it running, on that address?)") from None
        if response.status_code == 401:
            if self.sends_key:
                raise StoreError(f"{self.where} refused the admin key in {self.key_variable}")
            raise StoreError(f"{self.where} needs the admin key: set {self.key_variable}")
        if response.status_code >= 400 and response.status_code not in allow:
            raise StoreError(f"{self.where}: {_error_message(response)}")
        return response

    def report(self, by: str, params: dict[str, str]) -> tuple[dict[str, Any], Table]:
        data = self._get(f"/admin/costs/{by}", params)
        columns = [by, *queries.COUNTS, "costs", "cost_reporting", "reporting_currency"]
        rows = [[_typed(c, r.get(c)) for c in columns] for r in data["data"]]
        return data, Table(columns, rows, brief=queries.brief_for(by))

    def bill(self, month: str) -> tuple[dict[str, Any], Table]:
        data = self._get("/admin/bill", {"month": month})
        for tenant in data["tenants"]:
            for key in ("costs", "cost_reporting"):
                tenant[key] = _typed(key, tenant[key])
        data["total_cost"] = _typed("total_cost", data["total_cost"])
        return data, queries.bill_table(data)

    def export(self, fmt: str, params: dict[str, str], out: IO[bytes]) -> int:
        try:
            with self.http.stream("GET", "/admin/export", params={**params, "format": fmt}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise StoreError(f"{self.where}: {_error_message(response)}")
                for chunk in response.iter_bytes():
                    out.write(chunk)
                return int(response.headers.get("x-meterway-rows", "0"))
        except httpx.HTTPError as exc:
            raise StoreError(f"{self.where}: {exc}") from None

    def ingest(self, path: Path) -> Ingested:
        result = Ingested()
        for chunk in _chunks(read_jsonl(path)):
            result.records += len(chunk)
            lines = [where for where, record in chunk if not isinstance(record, Invalid)]
            result.rejected += [Rejected(w, r.message) for w, r in chunk if isinstance(r, Invalid)]
            if not lines:
                continue
            records = [record for _, record in chunk if not isinstance(record, Invalid)]
            response = self._call("POST", "/v1/usage", allow=(400,), content=orjson.dumps(records),
                                  headers={"content-type": "application/json"})  # fmt: skip
            body = response.json()
            if "accepted" not in body:
                raise StoreError(f"{self.where}: {_error_message(response)}")
            result.accepted += body["accepted"]
            result.rejected += [Rejected(lines[r["index"]], r["error"]) for r in body["rejected"]]
        result.rejected.sort(key=lambda r: r.where)
        return result

    def reprice(self, params: dict[str, str], dry_run: bool) -> dict[str, Any]:
        body = {**params, "dry_run": dry_run}
        data: dict[str, Any] = self._call("POST", "/admin/reprice", json=body).json()
        return data

    def close(self) -> None:
        self.http.close()


def _chunks(records: Iterator[tuple[int, Any]]) -> Iterator[list[tuple[int, Any]]]:
    chunk: list[tuple[int, Any]] = []
    for item in records:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _typed(column: str, value: Any) -> Any:
    """JSON values back to what local queries return: money as Decimal."""
    if column == "costs" and isinstance(value, dict):
        return {k: Decimal(v) for k, v in value.items()}
    if column in ("cost_reporting", "cost", "total_cost") and isinstance(value, str):
        return Decimal(value)
    return value


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


__all__ = ["Ingested", "QueryError", "Store", "StoreError", "open_store"]
