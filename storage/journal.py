"""Journal segments in the spool directory: how they are named, handed over, and claimed after a crash.

Every process that journals events (a gateway worker, the store process, a single-process gateway)
writes its own segment, `<pid>-<time_ns>-<seq>.open`, holding an exclusive `flock` on it for as long
as it writes. Rotation renames the segment to `.jsonl` *before* closing it: a `.jsonl` segment is
closed for good, and whichever process loads the spool (the loader) may load and delete it.

A `.open` segment whose lock can be taken belongs to a process that died (the kernel drops the lock
with the process, even on SIGKILL), so the loader renames it to `.jsonl` and loads it too
(`claim_orphans`). Locks rather than pids decide this, so a reused pid never hides a dead writer's
segment. A segment is created under a `.new` name and renamed to `.open` only once locked, so the
loader never sees an unlocked segment that is still being set up.

Usage records from elsewhere (`POST /v1/usage`) are written whole into a file of their own,
`<pid>-<time_ns>-<seq>.records.jsonl` (created as `.new` and renamed once written): their timestamps are
the caller's, so the loader checks their request ids against every stored event, where a journal
segment's ids need only be checked against the events of its own time span.

One loader per spool: the loader holds `SpoolLock` (a lock on `<spool>/.loader.lock`), so two
processes never race to load and delete the same segments.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import time
from pathlib import Path

from storage.errors import StorageError
from storage.folders import make_folder

JOURNAL = "the event journal (storage.journal_dir)"
OPEN = ".open"
CLOSED = ".jsonl"
RECORDS = ".records" + CLOSED
_NEW = ".new"
_LOCK_NAME = ".loader.lock"


class SpoolBusy(StorageError):
    """Another process already loads this spool directory."""


_SEQ = itertools.count()


def _stem() -> str:
    """A new journal file's name before its suffix: this process's id, the time, and a sequence number."""
    return f"{os.getpid()}-{time.time_ns()}-{next(_SEQ):06d}"


class SegmentFile:
    """The segment this process is writing: an fd opened for appending, locked while open."""

    def __init__(self, spool: Path) -> None:
        stem = _stem()
        new = spool / (stem + _NEW)
        self.fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.path = spool / (stem + OPEN)
        os.rename(new, self.path)
        self.events = 0

    def close(self, keep: bool = True) -> Path | None:
        """Hand the segment over as `.jsonl` (or delete it when `keep` is false); returns the closed path."""
        closed: Path | None = None
        if keep:
            closed = self.path.with_suffix(CLOSED)
            os.rename(self.path, closed)
        else:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)  # drops the lock; the rename already told the loader it may take the segment
        self.fd = -1
        return closed


def write_records(spool: Path, lines: list[bytes], sync: bool) -> Path:
    """Write usage records into a closed file of their own (see the module's docstring); returns its path."""
    stem = _stem()
    new, closed = spool / (stem + _NEW), spool / (stem + RECORDS)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        data = b"".join(lines)
        while data:  # a short write (a full disk) goes on until it fails
            data = data[os.write(fd, data) :]
        if sync:
            os.fsync(fd)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            new.unlink()
        raise
    os.close(fd)
    os.rename(new, closed)
    return closed


def is_records(segment: Path) -> bool:
    return segment.name.endswith(RECORDS)


def closed_segments(spool: Path) -> list[Path]:
    """Segments ready to load, oldest first (by name: pid, then creation time)."""
    return sorted(spool.glob("*" + CLOSED)) if spool.is_dir() else []


def claim_orphans(spool: Path) -> list[Path]:
    """Close the `.open` segments of processes that died; returns them under their `.jsonl` names."""
    claimed = []
    for path in sorted(spool.glob("*" + OPEN)) if spool.is_dir() else []:
        if _unlocked(path):
            target = path.with_suffix(CLOSED)
            with contextlib.suppress(FileNotFoundError):  # its writer closed it meanwhile
                os.rename(path, target)
                claimed.append(target)
    for path in spool.glob("*" + _NEW) if spool.is_dir() else []:
        # Never renamed to `.open`, so nothing was written to it; young ones may be a writer's setup.
        with contextlib.suppress(FileNotFoundError):
            if time.time() - path.stat().st_mtime > 60 and _unlocked(path):
                path.unlink()
    return claimed


def _unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops a lock just taken: the rename that follows needs none
    return True


class SpoolLock:
    """Held by the one process that loads a spool directory."""

    def __init__(self, spool: Path) -> None:
        make_folder(spool, JOURNAL)
        self.fd = os.open(spool / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise SpoolBusy(
                f"{spool}: another Meterway process is loading this journal directory (give each gateway "
                "its own storage.journal_dir)"
            ) from None

    @classmethod
    def try_take(cls, spool: Path) -> SpoolLock | None:
        try:
            return cls(spool)
        except SpoolBusy:
            return None

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
