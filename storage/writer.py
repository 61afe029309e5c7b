"""The event writer: the request path's only contact with storage, and it never waits.

`submit(event)` appends one JSON line to this process's journal segment with a single `write()`
before the client gets the end of its answer; from then on the event survives a crash of this
process (the kernel holds the bytes). Every `flush_interval` a task rotates the segment: it is
renamed from `.open` to `.jsonl` and so handed over (storage/journal.py).

A writer with a sink is its spool's loader: after each rotation it loads every closed segment in
the spool into the sink in a worker thread (its own, other processes' in the same spool, and those
of processes that died) and deletes each once loaded. A single-process gateway is such a writer;
with several workers, each worker's writer has no sink and only journals, while the store process
(storage/store_process.py) runs the one loading writer. Segments left over by a crash are loaded at
start. The sink ignores request ids it already has, so a segment loaded twice never counts an event
twice.

fsync policy (`storage.fsync`), which only matters for a power loss or kernel crash:
  interval (default): a segment is fsynced before it is loaded, and the open one every
      `fsync_interval` (`storage.fsync_interval_ms`, 200 ms by default) from a worker thread, so a power loss costs at
      most that much of the most recent events while the request path never waits for a disk.
  always: fsync after every event; nothing is lost even on power loss, but each request waits
      for the disk (a few ms on SSD, far more on network or spinning disks).
  never: leave it to the OS (usually ~30 s of exposure); for throwaway or test setups.

Backlog: events this process journaled whose segment is not loaded yet are `pending` (a segment
counts as loaded once the loader has deleted it). When the loader cannot keep up or is failing and
`pending` passes `max_pending`, the writer keeps journaling (the disk is the buffer, nothing is
dropped) but degrades visibly: `stats.backlog_full` counts every event taken while over the limit,
a warning is logged when it starts and when it ends, and `degraded` turns readiness off so a load
balancer sends traffic elsewhere. Only a failing journal write drops an event, which is counted in
`stats.dropped` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage.event import UsageEvent
from storage.folders import make_folder
from storage.journal import (
    JOURNAL,
    SegmentFile,
    SpoolLock,
    claim_orphans,
    closed_segments,
    is_records,
    write_records,
)

log = logging.getLogger("meterway.storage")
LOAD_BATCH = 256  # segments loaded in one transaction at most
# ... and at most this much journal (a bigger segment loads alone), so a backlog left by downtime loads in
# steps whose working memory fits under storage.memory_limit
LOAD_BATCH_BYTES = 4 << 20
HANDOFF_WAIT = 5.0  # seconds a journal-only writer waits at stop for the loader to take its last segments


class EventSink(Protocol):
    """Where journal segments go. `maintain()` is periodic housekeeping (retention, compaction)."""

    def load_segments(self, segments: list[Path]) -> int: ...

    def load_segment(self, segment: Path) -> int: ...  # events from elsewhere: ids checked against all stored

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
    stored: int = 0  # new events this process loaded into the store, from any process's journal


class EventWriter:
    def __init__(
        self,
        sink: EventSink | None,
        spool: Path,
        flush_interval: float = 0.2,
        fsync: str = "interval",
        *,
        fsync_interval: float | None = None,
        max_pending: int = 1_000_000,
    ) -> None:
        self.sink = sink  # None: journal only, another process loads the spool
        self.spool = spool
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.fsync_interval = fsync_interval or flush_interval
        self.max_pending = max_pending
        self.stats = WriterStats()
        self.degraded = False
        self.journal_failing = False  # the last journal write failed: events are being dropped
        self._torn = False  # the segment ends in part of a line
        self._syncer: asyncio.Task[None] | None = None
        self._segment: SegmentFile | None = None
        self._fd = -1
        self._backlog: list[tuple[Path, int]] = []  # this process's rotated segments not loaded yet
        self._spool_lock: SpoolLock | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def claim_spool(self) -> None:
        """Become the spool's one loader (a writer with a sink); raises SpoolBusy if another process is."""
        if self.sink is not None and self._spool_lock is None:
            self._spool_lock = SpoolLock(self.spool)

    async def start(self) -> None:
        make_folder(self.spool, JOURNAL)
        if self.sink is not None:
            self.claim_spool()
            claim_orphans(self.spool)
            leftovers = closed_segments(self.spool)
            if leftovers:
                log.info("replaying %d journal segment(s) from %s", len(leftovers), self.spool)
        self._open_segment()
        await self._load_spool()
        self._task = asyncio.create_task(self._run(), name="meterway-event-writer")
        if self.fsync == "interval" and self.fsync_interval < self.flush_interval:
            self._syncer = asyncio.create_task(self._sync_periodically(), name="meterway-journal-fsync")

    def submit(self, event: UsageEvent) -> None:
        """Journal one event. Never blocks on the database; costs one write() syscall."""
        line = event.to_json() + b"\n"
        if self._torn:  # end the part of a line a short write left, which the loader skips, so this one is whole
            line = b"\n" + line
        try:
            written = os.write(self._fd, line)
            self._torn = written < len(line)
            if self._torn:  # a full disk takes what fits
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(line)} bytes")
            if self.fsync == "always":
                os.fsync(self._fd)
        except OSError as exc:
            self.stats.dropped += 1
            if not self.journal_failing:
                log.error("event %s dropped: journal write failed: %s", event.request_id, exc)
            self.journal_failing = True
            return
        if self.journal_failing:
            self.journal_failing = False
            log.warning("journal writes succeed again: %d events were dropped so far", self.stats.dropped)
        self.stats.submitted += 1
        self.stats.pending += 1
        if self._segment is not None:
            self._segment.events += 1
        if self.stats.pending > self.max_pending:
            self.stats.backlog_full += 1
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "storage backlog full: %d events wait to be stored (limit %d); still journaling, not ready",
                    self.stats.pending, self.max_pending,
                )  # fmt: skip

    def submit_records(self, events: list[UsageEvent]) -> None:
        """Journal usage records from elsewhere, in a file of their own before the caller is answered (see
        storage.journal); raises OSError, the events counted as dropped, when it cannot be written."""
        try:
            path = write_records(self.spool, [event.to_json() + b"\n" for event in events], self.fsync == "always")
        except OSError as exc:
            self.stats.dropped += len(events)
            log.error("%d usage records dropped: journal write failed: %s", len(events), exc)
            raise
        self.stats.submitted += len(events)
        self.stats.pending += len(events)
        self._backlog.append((path, len(events)))

    async def flush(self) -> None:
        """Rotate the current segment (if it has events); a loader then loads everything closed."""
        async with self._flush_lock:
            if self._segment is not None and self._segment.events:
                self._rotate()
            await self._load_spool()
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
        if self._segment is not None:
            events = self._segment.events
            self._backlog += [(p, events) for p in [self._segment.close(keep=events > 0)] if p is not None]
            self._segment, self._fd = None, -1
            await self._load_spool()
        if self.sink is None:
            await self._wait_for_handoff()
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
        if self._spool_lock is not None:
            self._spool_lock.release()

    async def _wait_for_handoff(self) -> None:
        """Give the loader a moment to take the last segments, so the stats say what was stored (bounded:
        the segments are safe in the journal either way)."""
        deadline = asyncio.get_running_loop().time() + HANDOFF_WAIT + self.flush_interval
        while self._backlog and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(min(self.flush_interval, 0.05))
            await self._load_spool()
        if self._backlog:
            log.info("%d journaled events are left for the store process to load", self.stats.pending)

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval)
            if self._stop.is_set():
                return
            try:
                await self.flush()
                if self.sink is not None:
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
        self._segment = SegmentFile(self.spool)
        self._fd = self._segment.fd
        self._torn = False

    def _rotate(self) -> None:
        assert self._segment is not None
        old = self._segment
        self._open_segment()
        closed = old.close()  # synced by the loading thread, so the event loop never waits for the disk
        assert closed is not None
        self._backlog.append((closed, old.events))

    async def _load_spool(self) -> None:
        """Load every closed segment (a loader only), then count this process's segments that are gone."""
        if self.sink is not None:
            try:
                await asyncio.to_thread(self._load_all)
            except Exception as exc:
                self.stats.load_errors += 1
                log.error("loading the journal failed (segments kept for retry): %s", exc)
        if self._backlog:
            gone = [(path, count) for path, count in self._backlog if not path.exists()]
            for item in gone:
                self._backlog.remove(item)
                self.stats.loaded += item[1]
                self.stats.pending -= item[1]

    def _load_all(self) -> None:
        claim_orphans(self.spool)
        for batch in batches(closed_segments(self.spool)):
            self._load(batch)

    def _load(self, segments: list[Path]) -> None:
        """One transaction for a batch of segments: with many workers, one per worker per interval adds up."""
        assert self.sink is not None
        if self.fsync == "interval":
            for segment in segments:
                fd = os.open(segment, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        journal = [segment for segment in segments if not is_records(segment)]
        if journal:
            self.stats.stored += self.sink.load_segments(journal)
            for segment in journal:
                segment.unlink()
        for records in (segment for segment in segments if is_records(segment)):
            self.stats.stored += self.sink.load_segment(records)  # ids checked against every stored event
            records.unlink()


def batches(segments: list[Path]) -> list[list[Path]]:
    """Consecutive groups of segments, each within LOAD_BATCH segments and LOAD_BATCH_BYTES of journal."""
    groups: list[list[Path]] = []
    size = 0
    for segment in segments:
        try:
            length = segment.stat().st_size
        except FileNotFoundError:
            continue
        if not groups or len(groups[-1]) >= LOAD_BATCH or size + length > LOAD_BATCH_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(segment)
        size += length
    return groups
