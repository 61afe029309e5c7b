"""The gateway's HTTP protocol: a response's head leaves with the write that follows it, a busy loop sends its
writes at the end of its turn, and nothing is held past the turn that wrote it (a stream's head goes out before
its first chunk exists)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gateway.http_protocol import GatheringHttpToolsProtocol, GatheringTransport


class Recording:
    """A transport that records what reaches it."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.inner is not None:
            self.inner.write(data)

    def is_closing(self) -> bool:
        return self.inner.is_closing() if self.inner is not None else self.closed

    def close(self) -> None:
        self.closed = True
        if self.inner is not None:
            self.inner.close()

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_a_head_leaves_with_the_write_after_it() -> None:
    inner = Recording()
    gathering = GatheringTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    gathering.write(HEAD)
    gathering.write(b"")
    assert inner.writes == []
    assert gathering.get_write_buffer_size() == len(HEAD)
    gathering.write(bytearray(b"{}"))
    assert inner.writes == [HEAD + b"{}"]  # at once, not at the next turn
    gathering.writelines([b"more ", b"bytes"])  # writes that start nothing go straight through
    assert inner.writes[1:] == [b"more ", b"bytes"]
    await next_turn()  # the turn's end finds nothing held
    assert len(inner.writes) == 3


async def test_a_head_alone_leaves_at_the_end_of_the_turn() -> None:
    inner = Recording()
    gathering = GatheringTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    gathering.write(HEAD)
    await next_turn()
    assert inner.writes == [HEAD]


async def test_while_other_requests_are_in_flight_writes_wait_for_the_end_of_the_turn() -> None:
    inner = Recording()
    in_flight = {"this request", "another"}
    gathering = GatheringTransport(inner, asyncio.get_running_loop(), in_flight)  # type: ignore[arg-type]
    gathering.write(HEAD)
    gathering.write(b"{}")
    gathering.write(b"data: 1\n\n")
    assert inner.writes == []
    await next_turn()
    assert inner.writes == [HEAD + b"{}data: 1\n\n"]
    in_flight.discard("another")  # alone again: a write goes at once, with anything held before it
    gathering.write(b"x")
    assert inner.writes[1:] == [b"x"]


async def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    inner = Recording()
    gathering = GatheringTransport(inner, loop)  # type: ignore[arg-type]
    gathering.write(HEAD)
    gathering.close()
    assert inner.writes == [HEAD] and inner.closed
    await next_turn()
    assert inner.writes == [HEAD]

    inner = Recording()
    gathering = GatheringTransport(inner, loop)  # type: ignore[arg-type]
    gathering.write(HEAD)
    gathering.abort()
    await next_turn()
    assert inner.writes == [] and inner.aborted


async def test_nothing_is_written_to_a_transport_already_closed() -> None:
    inner = Recording()
    gathering = GatheringTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    gathering.write(HEAD)
    inner.closed = True
    await next_turn()
    assert inner.writes == []


# -- on a real uvicorn server ----------------------------------------------------------------------

SENT: list[Recording] = []


class RecordedProtocol(GatheringHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        SENT.append(recording := Recording(transport))
        super().connection_made(recording)  # type: ignore[arg-type]


FLOOD_CHUNK, FLOOD_CHUNKS = 64 * 1024, 400  # 25 MiB, more than loopback's socket buffers take in
PAUSED: list[int] = []  # the chunk at which /flood's producer was made to wait, -1 if never


async def flood(send: Any) -> None:
    """Send FLOOD_CHUNKS chunks without waiting for anything but `send`; the first `send` that waits (the loop
    turns while it is in progress) is recorded."""
    loop = asyncio.get_running_loop()

    def waiting(chunk: int) -> None:
        PAUSED.append(chunk)
        EVENTS["flooded"].set()

    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(FLOOD_CHUNKS):
        turn = loop.call_soon(waiting, i)  # runs only if `send` lets the loop turn
        await send({"type": "http.response.body", "body": b"x" * FLOOD_CHUNK, "more_body": True})
        turn.cancel()
    if not PAUSED:
        waiting(-1)  # never made to wait
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/flood":
        await flood(send)
        return
    if scope["path"] == "/hold":  # a request in flight until the test lets it go
        EVENTS["held"].set()
        await EVENTS["release"].wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/whole":
        body = b'{"ok":true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await EVENTS["release"].wait()  # the first chunk exists only once the client has seen the headers
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


EVENTS: dict[str, asyncio.Event] = {}


@pytest.fixture
async def server() -> AsyncIterator[int]:
    SENT.clear()
    PAUSED.clear()
    EVENTS.update(release=asyncio.Event(), held=asyncio.Event(), flooded=asyncio.Event())
    config = uvicorn.Config(
        app, http=RecordedProtocol, lifespan="off", log_level="warning", timeout_graceful_shutdown=5
    )
    srv = uvicorn.Server(config)
    # A socket listening before the server starts: connections wait in its backlog until the server takes them.
    sock = socket.create_server(("127.0.0.1", 0))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    yield sock.getsockname()[1]
    EVENTS["release"].set()
    srv.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def request(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_a_whole_answer_leaves_in_one_send(server: int) -> None:
    reader, writer = await request(server, "/whole")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and await reader.readexactly(11) == b'{"ok":true}'
    writer.close()
    assert len(SENT[0].writes) == 1 and SENT[0].writes[0].endswith(b'\r\n\r\n{"ok":true}')


async def test_a_stream_s_headers_are_not_held_for_its_first_chunk(server: int) -> None:
    reader, writer = await request(server, "/stream")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b"text/event-stream" in head
    EVENTS["release"].set()
    assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10) == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"
    writer.close()
    assert len(SENT[0].writes) == 3  # the head, the chunk, the end of the stream


async def test_a_busy_loop_still_pauses_a_producer_its_client_cannot_keep_up_with(server: int) -> None:
    _, holder = await request(server, "/hold")  # another request in flight: this loop gathers its writes
    await asyncio.wait_for(EVENTS["held"].wait(), 10)
    _, flooded = await request(server, "/flood")  # never read
    try:
        await asyncio.wait_for(EVENTS["flooded"].wait(), 30)
    finally:
        flooded.close()
        holder.close()
    assert PAUSED[0] >= 0  # without a bound, all 25 MiB piled up in the process within one turn
