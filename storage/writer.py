"""The event writer: the request path's only contact with storage, and it never waits.

`submit(event)` appends one JSON line to the current journal segment with a single `write()`
before the client gets the end of its answer; from then on the event survives a crash of this
process (the kernel holds the bytes). Every `flush_interval` a task rotates the segment and loads
it into the sink in a worker thread; a loaded segment is deleted. Segments left over by a crash
are loaded at start. The sink ignores request ids it already has, so a segment loaded twice never
counts an event twice.

fsync policy (`storage.fsync`), which only matters for a power loss or kernel crash:
  interval (default): the journal is fsynced every `fsync_interval` (default: the flush interval)
      from a worker thread, so a power loss costs at most that much of the most recent events
      while the request path never waits for a disk.
  always: fsync after every event; nothing is lost even on power loss, but each request waits
      for the disk (a few ms on SSD, far more on network or spinning disks).
  never: leave it to the OS (usually ~30 s of exposure); for throwaway or test setups.

Backlog: events journaled but not yet loaded are `pending`. When the sink cannot keep up or is
failing and `pending` passes `max_pending`, the writer keeps journaling (the disk is the buffer,
nothing is dropped) but degrades visibly: `stats.backlog_full` counts every event taken while over
the limit, a warning is logged when it starts and when it ends, and `degraded` turns readiness off
so a load balancer sends traffic elsewhere. Only a failing journal write drops an event, which is
counted in `stats.dropped` and logged.
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
    """Where journal segments go. `maintain()` is periodic housekeeping (retention, compaction)."""

    def load_segment(self, segment: Path) -> int: ...

    def maintain(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class WriterStats:
    submitted: int = 0
    loaded: int = 0
    dropped: int = 0
    pending: int = 0  # written to the journal, not yet in the sink
    load_errors: int = 0
    backlog_full: int = 0  # events journaled while `pending` was over `max_pending`


class EventWriter:
    def __init__(
        self,
        sink: EventSink,
        spool: Path,
        flush_interval: float = 0.2,
        fsync: str = "interval",
        *,
        fsync_interval: float | None = None,
        max_pending: int = 1_000_000,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.fsync_interval = fsync_interval or flush_interval
        self.max_pending = max_pending
        self.stats = WriterStats()
        self.degraded = False
        self._syncer: asyncio.Task[None] | None = None
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
        if self.fsync == "interval" and self.fsync_interval < self.flush_interval:
            self._syncer = asyncio.create_task(self._sync_periodically(), name="meterway-journal-fsync")

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
        if self.stats.pending > self.max_pending:
            self.stats.backlog_full += 1
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "storage backlog full: %d events wait to be stored (limit %d); still journaling, not ready",
                    self.stats.pending, self.max_pending,
                )  # fmt: skip

    async def flush(self) -> None:
        """Rotate the current segment (if it has events) and load everything pending."""
        async with self._flush_lock:
            if self._segment_events:
                self._rotate()
            await self._load_backlog()
            if self.degraded and self.stats.pending <= self.max_pending:
                self.degraded = False
                log.warning("storage backlog cleared: %d events pending", self.stats.pending)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._syncer is not None:
            await self._syncer
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
                await asyncio.to_thread(self.sink.maintain)
            except Exception:  # the writer must outlive any one bad batch
                log.exception("event flush failed; will retry")

    async def _sync_periodically(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.fsync_interval)
            if self._fd < 0:
                return
            fd = os.dup(self._fd)  # the segment may rotate (and its fd close) while the thread syncs
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                log.error("journal fsync failed: %s", exc)
            finally:
                os.close(fd)

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
        os.close(old_fd)  # synced by the loading thread, so the event loop never waits for the disk

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
        if self.fsync == "interval":
            fd = os.open(segment, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.sink.load_segment(segment)
        segment.unlink()
