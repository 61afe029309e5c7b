"""What the governance schedule keeps between runs: which reports went out, and which process runs it.

`ReportMarks` (`<data dir>/reports.json`) holds, per report period, the last scheduled time a report
was handled, so a restart neither sends a report twice nor forgets one that fell due while the
gateway was down. `FileLease` (`<data dir>/governance.lock`) is an exclusive `flock`: with several
workers, only the holder runs the schedule; the lock dies with its process, so another worker takes
over at its next pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson

from governance.files import write_atomically
from governance.periods import iso_z

log = logging.getLogger("meterway.governance")


class Marks(Protocol):
    """Per report period, the last scheduled time handled (this data dir's file, or the catalog database)."""

    def load(self) -> None: ...

    def get(self, period: str) -> datetime | None: ...

    def set(self, period: str, fired_at: datetime) -> None: ...

    def close(self) -> None: ...


class Lease(Protocol):
    """The right to run the schedule: one holder among the workers (a lock file) or replicas (the database)."""

    @property
    def held(self) -> bool: ...

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class ReportMarks:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._marks: dict[str, datetime] = {}

    def load(self) -> None:
        self._marks = {}
        try:
            raw = orjson.loads(self.path.read_bytes())
            for period, text in raw.items():
                when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
                if when.tzinfo is not None:
                    self._marks[str(period)] = when
        except FileNotFoundError:
            return
        except (ValueError, AttributeError) as exc:
            log.warning("%s: unreadable (%s); reports resume from now", self.path, exc)

    def get(self, period: str) -> datetime | None:
        return self._marks.get(period)

    def set(self, period: str, fired_at: datetime) -> None:
        self._marks[period] = fired_at
        body = orjson.dumps({p: iso_z(at) for p, at in sorted(self._marks.items())})
        write_atomically(self.path, body, mode=0o644)

    def close(self) -> None:
        """Nothing stays open between calls."""


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """True when this process holds the lease (now or already); never blocks."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
