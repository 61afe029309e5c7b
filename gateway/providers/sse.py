"""Incremental decoders for the streaming framings: Server-Sent Events, NDJSON and JSON values.

Each takes bytes as they arrive and hands back complete units, keeping only an incomplete tail.
The SSE decoder follows the WHATWG rules that matter for LLM APIs: LF, CRLF or CR line ends,
`data:` with or without a space, several `data:` lines joined with "\\n", comment lines (":"),
`event:` and `id:` lines, and a last event with no blank line after it (flushed by `finish`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str  # "" when the event had no `event:` line
    data: bytes
    raw: bytes  # the event's bytes exactly as received, blank line included


class SSEDecoder:
    """`feed(bytes) -> [SSEEvent]`, `finish() -> [SSEEvent]`."""

    __slots__ = ("_buf", "_sep")

    def __init__(self) -> None:
        self._buf = b""
        self._sep = b""  # the blank-line separator, known from the stream's first line end

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        sep = self._sep or self._detect(buf)
        events: list[SSEEvent] = []
        start = 0
        if sep:
            n = len(sep)
            while (end := buf.find(sep, start)) >= 0:
                stop = end + n
                events.append(_parse_event(buf[start:end], buf[start:stop]))
                start = stop
        self._buf = buf[start:]
        return events

    def skip(self, chunk: bytes) -> bytes:
        """Move past the complete events in `chunk` without parsing them; returns their bytes.

        For chunks a caller has already found uninteresting by a bytes scan: only the boundary of the
        last complete event is located, and the incomplete tail is kept as usual.
        """
        buf = self._buf + chunk if self._buf else chunk
        sep = self._sep or self._detect(buf)
        cut = buf.rfind(sep) if sep else -1
        if cut < 0:
            self._buf = buf
            return b""
        cut += len(sep)
        self._buf = buf[cut:]
        return buf[:cut]

    @property
    def separator(self) -> bytes:
        """The blank-line separator (b"" until the first line end is seen)."""
        return self._sep

    def _detect(self, buf: bytes) -> bytes:
        lf = buf.find(b"\n")
        cr = buf.find(b"\r")
        if lf < 0 and cr < 0:
            return b""
        if cr < 0 or (0 <= lf < cr):
            self._sep = b"\n\n"
        elif cr + 1 < len(buf):
            self._sep = b"\r\n\r\n" if buf[cr + 1 : cr + 2] == b"\n" else b"\r\r"
        return self._sep

    def finish(self) -> list[SSEEvent]:
        rest, self._buf = self._buf, b""
        if rest.strip():
            return [_parse_event(rest, rest)]
        return []

    @property
    def pending(self) -> bytes:
        return self._buf


def events_around(region: bytes, sep: bytes, offsets: list[int]) -> list[tuple[int, int, SSEEvent]]:
    """The events of `region` (complete events, as `skip` returns them) that hold the given offsets.

    Returns (start, end, event) in stream order, each event once however many offsets fall in it;
    the rest of the region is neither split nor parsed.
    """
    found: list[tuple[int, int, SSEEvent]] = []
    n = len(sep)
    last_end = -1
    for pos in sorted(offsets):
        if pos < last_end:
            continue  # inside the event just taken
        start = region.rfind(sep, 0, pos)
        start = 0 if start < 0 else start + n
        end = region.find(sep, pos)
        last_end = len(region) if end < 0 else end + n
        block = region[start:end] if end >= 0 else region[start:]
        found.append((start, last_end, _parse_event(block, region[start:last_end])))
    return found


def _parse_event(block: bytes, raw: bytes) -> SSEEvent:
    if block.startswith(b"data: ") and b"\n" not in block and b"\r" not in block:
        return SSEEvent("", block[6:], raw)  # the common one-line event, without the general parse
    event = ""
    data: list[bytes] = []
    for line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line or line[:1] == b":":
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return SSEEvent(event, b"\n".join(data), raw)


class NDJSONDecoder:
    """`feed(bytes) -> [line]`: complete non-empty lines, without their line end."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        parts = buf.split(b"\n")
        self._buf = parts.pop()
        return [p.strip() for p in parts if p.strip()]

    def finish(self) -> list[bytes]:
        rest, self._buf = self._buf.strip(), b""
        return [rest] if rest else []


_STRUCTURE = re.compile(rb'[\\"{}\[\]]')
_BACKSLASH, _QUOTE, _LBRACE, _LBRACKET = 0x5C, 0x22, 0x7B, 0x5B


class JSONValuesDecoder:
    """`feed(bytes) -> [object]`: each complete JSON object at the top of the body or of a top-level array.

    Reads one JSON document, a JSON array streamed element by element (Gemini without `alt=sse`),
    or objects one after another (NDJSON, pretty-printed or not). Only the object being read is
    kept; the scan visits only quotes, backslashes and brackets.
    """

    __slots__ = ("_base", "_depth", "_escaped", "_in_string", "_parts")

    def __init__(self) -> None:
        self._base = -1  # nesting depth of the values: 0 for top-level objects, 1 inside a top-level array
        self._depth = 0
        self._in_string = False
        self._escaped = False  # the previous chunk ended with a backslash inside a string
        self._parts: list[bytes] | None = None  # the object being read, when one is open

    def feed(self, chunk: bytes) -> list[bytes]:
        values: list[bytes] = []
        start = 0 if self._parts is not None else -1
        pos = 1 if self._escaped else 0
        self._escaped = False
        while (m := _STRUCTURE.search(chunk, pos)) is not None:
            i = m.start()
            pos = i + 1
            c = chunk[i]
            if self._in_string:
                if c == _BACKSLASH:
                    self._escaped = pos >= len(chunk)
                    pos += 1
                elif c == _QUOTE:
                    self._in_string = False
            elif c == _QUOTE:
                self._in_string = True
            elif c in (_LBRACE, _LBRACKET):
                if self._base < 0:
                    self._base = 1 if c == _LBRACKET else 0
                if self._depth == self._base and c == _LBRACE:
                    self._parts, start = [], i
                self._depth += 1
            else:
                self._depth = max(self._depth - 1, 0)
                if self._depth == self._base and self._parts is not None:
                    values.append(b"".join([*self._parts, chunk[start:pos]]))
                    self._parts, start = None, -1
        if self._parts is not None:
            self._parts.append(chunk[start:])
        return values

    def finish(self) -> list[bytes]:
        """An object still open at the end was cut off: it is dropped."""
        self._parts = None
        return []
