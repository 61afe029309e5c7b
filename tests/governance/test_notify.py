"""Notifications against a real local HTTP receiver: HMAC signatures, retries with backoff, the delivery log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from governance.config import NotificationConfig
from governance.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Channel,
    Dispatcher,
    JsonLinesDeliveryLog,
    LogNotifier,
    MemoryDeliveryLog,
    Notification,
    SlackNotifier,
    WebhookNotifier,
    build_channels,
    posts,
    verify_signature,
)

SECRET = "hook-secret"


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that answers with the statuses it is told, in order, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)  # headers, body, signed ok
    hold: asyncio.Event | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_signature(SECRET.encode(), body, request.headers.get(SIGNATURE_HEADER))
        self.received.append((dict(request.headers), body, ok))
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()  # listening once this returns
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def closed_port() -> int:
    """A port nothing listens on: bound once to get a free number, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def channel(notifier: WebhookNotifier | SlackNotifier | LogNotifier, events: tuple[str, ...] = ()) -> Channel:
    return Channel(notifier, NotificationConfig(notifier.name, "webhook", events=events))


def alert() -> Notification:
    return Notification("budget.threshold", "Budget acme passed 80%", "8 of 10 USD", {"budget": "acme"})


async def test_signed_webhook_is_retried_after_two_failures(
    receiver: Receiver, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    receiver.statuses = [500, 500]
    log = JsonLinesDeliveryLog(tmp_path / "deliveries.jsonl")
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    hook = WebhookNotifier("ops", receiver.url, client, secret=SECRET)
    dispatcher = Dispatcher([channel(hook)], log, max_attempts=5, base_delay=0.25, sleep=sleep)
    note = alert()
    assert dispatcher.notify(note) == 1
    await dispatcher.drain()

    assert len(receiver.received) == 3 and all(ok for _, _, ok in receiver.received)
    headers, body, _ = receiver.received[-1]
    doc = json.loads(body)
    assert doc["id"] == note.id and doc["event"] == "budget.threshold" and doc["payload"] == {"budget": "acme"}
    assert str(doc["sent_at"]) == headers[TIMESTAMP_HEADER]
    assert headers[SIGNATURE_HEADER].startswith("sha256=") and headers["Content-Type"] == "application/json"
    assert delays == [0.25, 0.5]  # exponential backoff
    attempts = [(a.attempt, a.status, a.http_status) for a in reversed(log.recent())]
    assert attempts == [(1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200)]
    lines = log.read()
    assert [(x["attempt"], x["status"], x["error"]) for x in lines] == [
        (1, "retrying", "HTTP 500"),
        (2, "retrying", "HTTP 500"),
        (3, "delivered", None),
    ]
    assert all(x["channel"] == "ops" and x["notification_id"] == note.id for x in lines)


async def test_a_stopping_gateway_drops_what_is_still_retrying_and_logs_it(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.statuses = [500] * 5
    log = MemoryDeliveryLog()
    dispatcher = Dispatcher([channel(WebhookNotifier("ops", receiver.url, client))], log, base_delay=60)
    dispatcher.notify(alert())
    started = asyncio.get_running_loop().time()
    assert await dispatcher.drain(stop_after=0.5) == 1
    assert asyncio.get_running_loop().time() - started < 5 and dispatcher.pending == 0
    assert [(a.attempt, a.status, a.error) for a in log.attempts] == [
        (1, "retrying", "HTTP 500"), (0, "dropped", "the gateway stopped before it was delivered"),
    ]  # fmt: skip


async def test_a_tampered_body_fails_verification(receiver: Receiver, client: httpx.AsyncClient) -> None:
    dispatcher = Dispatcher(
        [channel(WebhookNotifier("ops", receiver.url, client, secret="other"))], MemoryDeliveryLog()
    )
    dispatcher.notify(alert())
    await dispatcher.drain()
    assert [ok for _, _, ok in receiver.received] == [False]


async def test_client_errors_are_final_and_dead_receivers_give_up(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.statuses = [400]
    log = MemoryDeliveryLog()
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    dispatcher = Dispatcher(
        [channel(WebhookNotifier("live", receiver.url, client)), channel(WebhookNotifier("dead", dead, client))],
        log,
        max_attempts=3,
        base_delay=0.001,
    )
    dispatcher.notify(alert())
    await dispatcher.drain()
    by_channel = {name: [(a.attempt, a.status) for a in log.attempts if a.channel == name] for name in ("live", "dead")}
    assert by_channel["live"] == [(1, "failed")]
    assert by_channel["dead"] == [(1, "retrying"), (2, "retrying"), (3, "failed")]
    assert all(a.error and "Connect" in a.error for a in log.attempts if a.channel == "dead")


async def test_notify_never_waits_for_the_receiver(receiver: Receiver, client: httpx.AsyncClient) -> None:
    receiver.hold = asyncio.Event()
    log = MemoryDeliveryLog()
    dispatcher = Dispatcher([channel(WebhookNotifier("ops", receiver.url, client))], log)
    assert dispatcher.notify(alert()) == 1  # returns at once, the receiver is stuck
    assert dispatcher.pending == 1 and list(log.attempts) == []
    receiver.hold.set()
    await dispatcher.drain()
    assert dispatcher.pending == 0 and [a.status for a in log.attempts] == ["delivered"]


async def test_slack_body_and_event_filters(receiver: Receiver, client: httpx.AsyncClient) -> None:
    slack = channel(SlackNotifier("slack", receiver.url, client), events=("anomaly",))
    dispatcher = Dispatcher([slack], MemoryDeliveryLog())
    assert dispatcher.notify(alert()) == 0  # not an event this channel wants
    assert dispatcher.notify(Notification("anomaly", "Spike", "acme spent 40 USD")) == 1
    await dispatcher.drain()
    ((_, body, _),) = receiver.received
    assert json.loads(body) == {"text": "*Spike*\nacme spent 40 USD"}


async def test_log_channel_and_the_pending_bound(caplog: pytest.LogCaptureFixture) -> None:
    log = MemoryDeliveryLog()
    dispatcher = Dispatcher([channel(LogNotifier("log"))], log, max_pending=1)
    with caplog.at_level(logging.WARNING, logger="meterway.notify"):
        assert dispatcher.notify(alert()) == 1
        assert dispatcher.notify(alert()) == 0  # over the bound: dropped, and recorded as such
        await dispatcher.drain()
    assert "[budget.threshold] Budget acme passed 80%: 8 of 10 USD" in caplog.text
    assert sorted(a.status for a in log.attempts) == ["delivered", "dropped"]


async def test_channels_are_built_from_config(client: httpx.AsyncClient) -> None:
    configs = (
        NotificationConfig("hook", "webhook", url="https://ops.example/hook", secret="s"),
        NotificationConfig("chat", "slack", url="https://hooks.slack.example/x", events=("report.*",)),
        NotificationConfig("log", "log"),
    )
    channels = build_channels(configs, client)
    assert [type(c.notifier).__name__ for c in channels] == ["WebhookNotifier", "SlackNotifier", "LogNotifier"]
    assert [c.notifier.name for c in channels] == ["hook", "chat", "log"]
    assert channels[1].wants("report.daily") and not channels[1].wants("anomaly")


def test_only_channels_that_post_need_an_http_client() -> None:
    logs = (NotificationConfig("log", "log"),)
    assert not posts(logs)
    assert [type(c.notifier).__name__ for c in build_channels(logs, None)] == ["LogNotifier"]
    both = (*logs, NotificationConfig("hook", "webhook", url="https://ops.example/hook"))
    assert posts(both)
    with pytest.raises(ValueError, match="'hook' posts over HTTP"):
        build_channels(both, None)
