"""uvicorn's httptools protocol, with the writes of one turn of the event loop sent in one system call.

uvloop writes to the socket at once on every `transport.write()` when nothing is queued, so a
response becomes two sends: uvicorn writes the status line and headers on `http.response.start` and
the body on `http.response.body`. On loopback and on a LAN each send is a trip through the kernel's
TCP stack, and the first one costs more than the rest of the gateway's per-request work for a small
JSON answer. Here the connection's writes are gathered until the end of the current turn of the loop
and then written together: a whole answer goes out in one send, and the chunks of a stream that
arrive together leave together. Nothing waits for a later turn, so no byte is delayed by more than
the code already running.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GatheringTransport:
    """A socket transport whose writes are held until the loop's next turn, then written as one.

    Everything but writing and closing is the underlying transport's. `close()` writes what is
    held first; `abort()` drops it, as the underlying transport drops its own buffer."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._send)
        self._held.append(bytes(data) if not isinstance(data, bytes) else data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _send(self) -> None:
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        if not self._transport.is_closing():  # the peer went away: its transport is closed already
            self._transport.write(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._held)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` on a `GatheringTransport` (uvicorn's `http` setting takes the class)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, asyncio.get_running_loop())
        super().connection_made(cast(asyncio.Transport, gathering))
