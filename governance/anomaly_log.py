"""Anomalies kept once: a JSON-lines file of every anomaly reported, read back at start.

`AnomalyLog.append` writes one line per new anomaly (fsynced) before it is notified, and `load` reads
them all back, so after a restart the anomaly schedule knows which (tenant, metric, hour) were
reported and notifies none of them again, and `/admin/anomalies` still lists them. A line holds the
anomaly with its evidence (Decimals as strings, times ISO with `Z`) and when it was detected.

`load` re-reads the file only when it changed, so several gateway workers reading the file that one
of them writes always see the current list. A torn last line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson

from governance.anomaly import Anomaly, AnomalyKey
from governance.money import plain
from governance.periods import iso_z

log = logging.getLogger("meterway.governance")


@dataclass(frozen=True, slots=True)
class StoredAnomaly:
    anomaly: Anomaly
    detected_at: datetime

    @property
    def key(self) -> AnomalyKey:
        return self.anomaly.key


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def to_document(anomaly: Anomaly, detected_at: datetime) -> dict[str, Any]:
    return {
        "tenant": anomaly.tenant,
        "metric": anomaly.metric,
        "hour": iso_z(anomaly.hour),
        "observed": plain(anomaly.observed),
        "baseline_mean": plain(anomaly.baseline_mean),
        "baseline_std": plain(anomaly.baseline_std),
        "baseline": [plain(v) for v in anomaly.baseline],
        "z_score": _optional(anomaly.z_score),
        "ratio": _optional(anomaly.ratio),
        "rules": list(anomaly.rules),
        "unit": anomaly.unit,
        "detected_at": iso_z(detected_at),
    }


def _time(text: Any) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"expected a UTC time, got {text!r}")
    return value


def _decimal(text: Any) -> Decimal | None:
    return None if text is None else Decimal(str(text))


def from_document(doc: dict[str, Any]) -> StoredAnomaly:
    """The anomaly of one line; raises ValueError, KeyError or ArithmeticError on a malformed one."""
    anomaly = Anomaly(
        tenant=str(doc["tenant"]),
        metric=str(doc["metric"]),
        hour=_time(doc["hour"]),
        observed=Decimal(str(doc["observed"])),
        baseline_mean=Decimal(str(doc["baseline_mean"])),
        baseline_std=Decimal(str(doc["baseline_std"])),
        baseline=tuple(Decimal(str(v)) for v in doc["baseline"]),
        z_score=_decimal(doc.get("z_score")),
        ratio=_decimal(doc.get("ratio")),
        rules=tuple(str(r) for r in doc["rules"]),
        unit=str(doc.get("unit") or ""),
    )
    return StoredAnomaly(anomaly, _time(doc["detected_at"]))


class AnomalyStore(Protocol):
    """Where reported anomalies are kept: this file, or the catalog database DuckLake replicas share."""

    def load(self) -> list[StoredAnomaly]: ...

    def append(self, anomalies: Sequence[Anomaly], detected_at: datetime) -> None: ...

    def close(self) -> None: ...


class AnomalyLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._cached: list[StoredAnomaly] = []
        self._lock = threading.Lock()  # a reader in this process never sees half an append

    def load(self) -> list[StoredAnomaly]:
        """Every stored anomaly, oldest first (cached until the file changes)."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return []
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._cached = self._read()
                self._stamp = stamp
            return list(self._cached)

    def _read(self) -> list[StoredAnomaly]:
        out = []
        for number, line in enumerate(self.path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(from_document(orjson.loads(line)))
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                log.warning("%s line %d: skipped, not an anomaly record (%s)", self.path, number, exc)
        return out

    def append(self, anomalies: Sequence[Anomaly], detected_at: datetime) -> None:
        """Write the anomalies durably (before they are notified)."""
        if not anomalies:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = b"".join(orjson.dumps(to_document(a, detected_at)) + b"\n" for a in anomalies)
        with self._lock, self.path.open("ab+") as f:
            if f.tell() > 0:  # after a torn last line, start on a line of our own
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    lines = b"\n" + lines
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Nothing stays open between calls."""
