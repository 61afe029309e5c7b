"""A meter for the native wire formats: every chunk relayed unchanged, its JSON payloads read aside.

The framing is found, not assumed: a body whose first non-blank byte opens a JSON object or array
is read as JSON values (one document, a streamed array, or NDJSON); anything else as SSE. Some
providers send streams without a content type, and error bodies arrive with surprising ones.

    chunk -> frames (event name, payload bytes) -> PayloadReader.take -> ... -> PayloadReader.result

A reader looks at payload bytes first and parses only those that can hold usage, the model or an
error. Where usage is a running total repeated in every chunk, only the latest such payload is kept
and parsed when the report is asked for: the last report wins and nothing is summed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from gateway.providers import common
from gateway.providers.base import JSON, MeterReport
from gateway.providers.sse import JSONValuesDecoder, NDJSONDecoder, SSEDecoder
from gateway.usage import Usage

Frame = tuple[str, bytes]  # (SSE event name or "", payload)
TEXT_CAP = 8 << 20  # payload bytes kept for estimating output; past it the text is truncated


class Frames:
    """Frames of a body, the framing decided by its first non-blank byte."""

    __slots__ = ("_head", "_json", "_ndjson", "_sse")

    def __init__(self, ndjson: bool = False) -> None:
        self._head = b""
        self._sse: SSEDecoder | None = None
        self._json: JSONValuesDecoder | NDJSONDecoder | None = None
        self._ndjson = ndjson

    def feed(self, chunk: bytes) -> list[Frame]:
        if self._sse is None and self._json is None:
            chunk = self._head + chunk
            first = chunk.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
            if not first:
                self._head = chunk
                return []
            self._head = b""
            if first in (b"{", b"["):
                self._json = NDJSONDecoder() if self._ndjson else JSONValuesDecoder()
            else:
                self._sse = SSEDecoder()
        if self._sse is not None:
            return [(ev.event, ev.data) for ev in self._sse.feed(chunk)]
        assert self._json is not None
        return [("", value) for value in self._json.feed(chunk)]

    def finish(self) -> list[Frame]:
        if self._sse is not None:
            return [(ev.event, ev.data) for ev in self._sse.finish()]
        if self._json is not None:
            return [("", value) for value in self._json.finish()]
        return []


class PayloadReader(Protocol):
    def take(self, event: str, data: bytes) -> None:
        """Read one payload (an SSE event's data with its event name, or a JSON value)."""

    def result(self) -> MeterReport: ...

    def text_of(self, obj: JSON) -> str:
        """The generated text in one parsed payload."""


class FrameMeter:
    """Relays every chunk as it came and hands the payloads in it to a kind's reader."""

    def __init__(self, reader: PayloadReader, status: int, ndjson: bool = False) -> None:
        self._reader = reader
        self._status = status
        self._frames = Frames(ndjson)
        self._payloads: list[bytes] = []
        self._kept = 0

    def feed(self, chunk: bytes) -> bytes:
        for event, data in self._frames.feed(chunk):
            self._take(event, data)
        return chunk

    def finish(self) -> bytes:
        for event, data in self._frames.finish():
            self._take(event, data)
        return b""

    def _take(self, event: str, data: bytes) -> None:
        if data and self._kept < TEXT_CAP:
            self._payloads.append(data)
            self._kept += len(data)
        self._reader.take(event, data)

    def report(self) -> MeterReport:
        report = self._reader.result()
        if self._status >= 400:  # the status already says it failed; the body only explains why
            report.error = None
        return report

    def output_text(self) -> str:
        parts: list[str] = []
        for data in self._payloads:
            obj = common.loads(data)
            if isinstance(obj, dict):
                parts.append(self._reader.text_of(obj))
        return "".join(parts)


class RunningTotalsReader:
    """A reader for APIs that repeat their usage so far in every chunk that carries it.

    Subclasses name the byte markers of payloads that may hold usage, an error or the model, and
    say how to read each out of a parsed payload.
    """

    usage_marker: ClassVar[bytes]
    error_markers: ClassVar[tuple[bytes, ...]] = (b'"error"',)
    model_marker: ClassVar[bytes | None] = None

    def __init__(self) -> None:
        self._latest: bytes | None = None  # the newest payload with usage, not parsed yet
        self._usage: Usage | None = None
        self._model: str | None = None
        self._error: str | None = None
        self._reasoning = False

    def take(self, event: str, data: bytes) -> None:
        if not self._reasoning:
            self._reasoning = common.reasoning_seen(data)
        if event == "error" or any(marker in data for marker in self.error_markers):
            self._read_error(event, data)
        if self.usage_marker in data:
            self._latest = data
        elif self._model is None and self.model_marker is not None and self.model_marker in data:
            obj = common.loads(data)
            if isinstance(obj, dict):
                self._model = self.model_of(obj)

    def _read_error(self, event: str, data: bytes) -> None:
        obj = common.loads(data)
        error = self.error_of(obj) if isinstance(obj, dict) else None
        if error is None and event == "error":
            error = data.decode("utf-8", "replace")[:500] or "stream error"
        if error:
            self._error = error

    def result(self) -> MeterReport:
        if self._latest is not None:
            obj = common.loads(self._latest)
            self._latest = None
            if isinstance(obj, dict):
                self._usage = self.usage_of(obj) or self._usage
                self._model = self.model_of(obj) or self._model
        return MeterReport(usage=self._usage, model=self._model, error=self._error, thinking=self._reasoning)

    def usage_of(self, obj: JSON) -> Usage | None:
        raise NotImplementedError

    def model_of(self, obj: JSON) -> str | None:
        return None

    def error_of(self, obj: JSON) -> str | None:
        return common.error_message(obj)

    def text_of(self, obj: JSON) -> str:
        raise NotImplementedError


def string_at(obj: Any, *keys: str) -> str | None:
    """A non-empty string found at a path of keys, else None."""
    value = common.get_path(obj, *keys)
    return value if isinstance(value, str) and value else None
