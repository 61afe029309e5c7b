"""The event writer: the request path's only contact with storage, and it never waits.

`submit(event)` appends one JSON line to the current journal segment with a single `write()`
(the event is then safe from a crash of this process). Every `flush_interval` a task rotates the
segment, fsyncs it, and loads it into the sink in a worker thread; a loaded segment is deleted.
Segments left over by a crash are loaded at start. The sink ignores request ids it already has,
so a segment loaded twice never counts an event twice.

fsync policy: `interval` (default) syncs each segment as it is rotated, so a power loss can cost
at most one interval of events while a process crash costs none; `always` syncs every event
(safest, slowest); `never` leaves it to the OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage.event import UsageEvent

log = logging.getLogger("meterway.storage")


class EventSink(Protocol):
    def load_segment(self, segment: Path) -> int: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class WriterStats:
    submitted: int = 0
    loaded: int = 0
    dropped: int = 0
    pending: int = 0  # written to the journal, not yet in the sink
    load_errors: int = 0


class EventWriter:
    def __init__(self, sink: EventSink, spool: Path, flush_interval: float = 0.2, fsync: str = "interval") -> None:
        self.sink = sink
        self.spool = spool
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.stats = WriterStats()
        self._seq = itertools.count()
        self._fd = -1
        self._segment: Path | None = None
        self._segment_events = 0
        self._backlog: list[tuple[Path, int]] = []  # rotated segments not yet loaded
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    async def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        leftovers = sorted(self.spool.glob("*.jsonl"))
        self._backlog.extend((p, 0) for p in leftovers)
        if leftovers:
            log.info("replaying %d journal segment(s) from %s", len(leftovers), self.spool)
        self._open_segment()
        await self._load_backlog()
        self._task = asyncio.create_task(self._run(), name="meterway-event-writer")

    def submit(self, event: UsageEvent) -> None:
        """Journal one event. Never blocks on the database; costs one write() syscall."""
        line = event.to_json() + b"\n"
        try:
            os.write(self._fd, line)
            if self.fsync == "always":
                os.fsync(self._fd)
        except OSError as exc:
            self.stats.dropped += 1
            log.error("event %s dropped: journal write failed: %s", event.request_id, exc)
            return
        self.stats.submitted += 1
        self.stats.pending += 1
        self._segment_events += 1

    async def flush(self) -> None:
        """Rotate the current segment (if it has events) and load everything pending."""
        async with self._flush_lock:
            if self._segment_events:
                self._rotate()
            await self._load_backlog()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._segment is not None and self._segment_events == 0:
            with contextlib.suppress(OSError):
                self._segment.unlink()
        await asyncio.to_thread(self.sink.close)

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval)
            if self._stop.is_set():
                return
            try:
                await self.flush()
            except Exception:  # the writer must outlive any one bad batch
                log.exception("event flush failed; will retry")

    def _open_segment(self) -> None:
        name = f"{os.getpid()}-{time.time_ns()}-{next(self._seq):06d}.jsonl"
        self._segment = self.spool / name
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._segment_events = 0

    def _rotate(self) -> None:
        assert self._segment is not None
        old_fd, old = self._fd, self._segment
        self._backlog.append((old, self._segment_events))
        self._open_segment()
        if self.fsync != "never":
            os.fsync(old_fd)
        os.close(old_fd)

    async def _load_backlog(self) -> None:
        while self._backlog:
            segment, count = self._backlog[0]
            try:
                await asyncio.to_thread(self._load, segment)
            except Exception as exc:
                self.stats.load_errors += 1
                log.error("loading %s failed (kept for retry): %s", segment.name, exc)
                return
            self._backlog.pop(0)
            self.stats.loaded += count
            self.stats.pending -= count

    def _load(self, segment: Path) -> None:
        self.sink.load_segment(segment)
        segment.unlink()
