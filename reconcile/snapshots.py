"""Stored provider data: one JSON file per fetch, so a report can be re-run offline and compared over time.

Snapshots live as plain files, not in the DuckDB file: the gateway holds that file open for
writing, and a reconciliation run from the command line must be able to store what it fetched
while the gateway runs. Layout:

    <snapshot_dir>/<provider>/<fetched>_<since>_<until>_<width>.json
    e.g. data/reconcile/openai/20250802T101500123456Z_20250801T0000Z_20250803T0000Z_1d.json

The file name (without `.json`) is the snapshot's id; the content is `ProviderData.to_dict()`
(normalized rows, Decimals as strings, no credentials). Files are written to a temporary name
and renamed, so a reader never sees half a snapshot. `latest()` picks the most recent fetch that
covers a range; an older id re-runs a report as it looked then.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from reconcile.errors import SnapshotError
from reconcile.model import ProviderData

_STAMP = "%Y%m%dT%H%M%S%fZ"
_MINUTE = "%Y%m%dT%H%MZ"


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    id: str
    provider: str
    fetched_at: datetime
    since: datetime
    until: datetime
    bucket_width: str
    path: Path

    def covers(self, since: datetime, until: datetime, bucket_width: str) -> bool:
        return self.bucket_width == bucket_width and self.since <= since and until <= self.until

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "fetched_at": self.fetched_at, "since": self.since, "until": self.until,
                "bucket_width": self.bucket_width}  # fmt: skip


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, data: ProviderData) -> SnapshotInfo:
        folder = self.root / data.provider
        folder.mkdir(parents=True, exist_ok=True)
        name = "_".join([
            data.fetched_at.astimezone(UTC).strftime(_STAMP), data.since.astimezone(UTC).strftime(_MINUTE),
            data.until.astimezone(UTC).strftime(_MINUTE), data.bucket_width,
        ])  # fmt: skip
        fd, tmp = tempfile.mkstemp(prefix=".snapshot-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(data.to_dict(), option=orjson.OPT_INDENT_2))
            os.replace(tmp, folder / f"{name}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        info = _info(data.provider, folder / f"{name}.json")
        assert info is not None
        return info

    def list(self, provider: str) -> list[SnapshotInfo]:
        """Every snapshot of a provider, oldest fetch first."""
        folder = self.root / provider
        if not folder.is_dir():
            return []
        found = [info for p in folder.glob("*.json") if (info := _info(provider, p)) is not None]
        return sorted(found, key=lambda i: (i.fetched_at, i.id))

    def load(self, provider: str, snapshot_id: str) -> tuple[SnapshotInfo, ProviderData]:
        info = next((i for i in self.list(provider) if i.id == snapshot_id), None)
        if info is None:
            raise SnapshotError(f"no {provider} snapshot {snapshot_id!r} in {self.root / provider}")
        try:
            return info, ProviderData.from_dict(orjson.loads(info.path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"cannot read snapshot {info.path}: {exc}") from None

    def latest(
        self, provider: str, since: datetime, until: datetime, bucket_width: str
    ) -> tuple[SnapshotInfo, ProviderData]:
        """The most recent snapshot covering [since, until), cut to that range."""
        candidates = [i for i in self.list(provider) if i.covers(since, until, bucket_width)]
        if not candidates:
            known = ", ".join(i.id for i in self.list(provider)[-5:]) or "none"
            raise SnapshotError(
                f"no {provider} snapshot with {bucket_width} buckets covers {since.isoformat()} to {until.isoformat()} "
                f"in {self.root / provider} (latest: {known}); run once online first"
            )
        info, data = self.load(provider, candidates[-1].id)
        return info, data.within(since, until)


def _info(provider: str, path: Path) -> SnapshotInfo | None:
    parts = path.stem.split("_")
    if len(parts) != 4:
        return None
    try:
        fetched = datetime.strptime(parts[0], _STAMP).replace(tzinfo=UTC)
        since = datetime.strptime(parts[1], _MINUTE).replace(tzinfo=UTC)
        until = datetime.strptime(parts[2], _MINUTE).replace(tzinfo=UTC)
    except ValueError:
        return None
    return SnapshotInfo(path.stem, provider, fetched, since, until, parts[3], path)
