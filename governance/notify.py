"""Notifications: the `Notifier` seam, its webhook, Slack and log implementations, and a retrying dispatcher.

A `Notification` (budget threshold, anomaly, daily or weekly report) goes to every channel whose
`events` filter wants it. `Dispatcher.notify` only schedules the deliveries and returns at once, so
the caller (the request path, the anomaly schedule) never waits on a slow or dead receiver. Each
delivery is retried with exponential backoff (`base_delay × 2^(attempt-1)`, capped at `max_delay`)
for up to `max_attempts` attempts on network errors, 408, 429 and 5xx; other 4xx answers are final.
Every attempt is written to a `DeliveryLog`. `drain()` waits for what is in flight (tests; at shutdown for
a few seconds, then what is still retrying is dropped and logged so).

Webhook requests carry the notification as JSON, `X-Meterway-Timestamp` (Unix seconds; also in
the body as `sent_at`, so the signature covers it) and, with a secret, `X-Meterway-Signature:
sha256=<hex>`: HMAC-SHA256 of the raw body under the secret. A receiver recomputes it over the bytes
it received (`verify_signature`) and rejects stale timestamps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from governance.config import NotificationConfig

SIGNATURE_HEADER = "X-Meterway-Signature"
TIMESTAMP_HEADER = "X-Meterway-Timestamp"


def _now() -> datetime:
    return datetime.now(UTC)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # Decimal and friends: exact text, never a float


@dataclass(frozen=True, slots=True)
class Notification:
    event: str  # one of config.EVENT_KINDS
    title: str
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=_now)

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "created_at": self.created_at.isoformat(),
            "title": self.title,
            "text": self.text,
            "payload": dict(self.payload),
        }


class DeliveryError(Exception):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Notifier(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, notification: Notification) -> int | None:
        """Deliver once; returns the HTTP status (None when there is none) or raises DeliveryError."""
        ...


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(secret, body), header)


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], seconds: float) -> int:
    try:
        response = await client.post(url, content=body, headers=headers, timeout=seconds)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    status = response.status_code
    if 200 <= status < 300:
        return status
    retryable = status in (408, 429) or status >= 500
    raise DeliveryError(f"HTTP {status}", status=status, retryable=retryable)


class WebhookNotifier:
    """Generic JSON webhook, HMAC-signed when a secret is configured."""

    def __init__(
        self,
        name: str,
        url: str,
        client: httpx.AsyncClient,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._name, self.url, self._client = name, url, client
        self._secret = secret.encode() if secret else None
        self._timeout, self._clock = timeout, clock

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> int | None:
        sent_at = int(self._clock().timestamp())
        body = orjson.dumps(notification.document() | {"sent_at": sent_at}, default=_json_default)
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(sent_at)}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return await _post(self._client, self.url, body, headers, self._timeout)


class SlackNotifier:
    """A Slack-compatible incoming webhook: `{"text": ...}`."""

    def __init__(self, name: str, url: str, client: httpx.AsyncClient, *, timeout: float = 10.0) -> None:
        self._name, self.url, self._client, self._timeout = name, url, client, timeout

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> int | None:
        body = orjson.dumps({"text": f"*{notification.title}*\n{notification.text}"})
        return await _post(self._client, self.url, body, {"Content-Type": "application/json"}, self._timeout)


class LogNotifier:
    def __init__(self, name: str = "log", logger: logging.Logger | None = None, level: int = logging.WARNING) -> None:
        self._name = name
        self._logger = logger or logging.getLogger("meterway.notify")
        self._level = level

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> int | None:
        self._logger.log(self._level, "[%s] %s: %s", notification.event, notification.title, notification.text)
        return None


@dataclass(frozen=True, slots=True)
class Channel:
    notifier: Notifier
    config: NotificationConfig

    def wants(self, event: str) -> bool:
        return self.config.wants(event)


NotifierFactory = Callable[[NotificationConfig, httpx.AsyncClient], Notifier]
POSTING: dict[str, NotifierFactory] = {
    "webhook": lambda c, client: WebhookNotifier(c.name, c.url or "", client, secret=c.secret),
    "slack": lambda c, client: SlackNotifier(c.name, c.url or "", client),
}


def posts(configs: Sequence[NotificationConfig]) -> bool:
    """Whether any channel posts over HTTP. Only then does a gateway open a client for them: an httpx
    client loads the TLS trust store as it is built (about 2 MiB)."""
    return any(c.kind in POSTING for c in configs)


def build_channels(configs: Sequence[NotificationConfig], client: httpx.AsyncClient | None) -> list[Channel]:
    """The channels; `client` carries the posting ones' requests and may be None when none posts."""
    channels = []
    for c in configs:
        if c.kind not in POSTING:
            notifier: Notifier = LogNotifier(c.name)
        elif client is None:
            raise ValueError(f"notification channel {c.name!r} posts over HTTP and needs a client")
        else:
            notifier = POSTING[c.kind](c, client)
        channels.append(Channel(notifier, c))
    return channels


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    notification_id: str
    event: str
    channel: str
    attempt: int
    status: str  # "delivered" | "retrying" | "failed" | "dropped"
    at: datetime
    http_status: int | None = None
    error: str | None = None

    def document(self) -> dict[str, Any]:
        return asdict(self) | {"at": self.at.isoformat()}


class DeliveryLog(Protocol):
    def record(self, attempt: DeliveryAttempt) -> None: ...
    def recent(self, limit: int = 100) -> list[DeliveryAttempt]: ...


class MemoryDeliveryLog:
    def __init__(self, keep: int = 10_000) -> None:
        self.attempts: deque[DeliveryAttempt] = deque(maxlen=keep)

    def record(self, attempt: DeliveryAttempt) -> None:
        self.attempts.append(attempt)

    def recent(self, limit: int = 100) -> list[DeliveryAttempt]:
        return list(self.attempts)[-limit:][::-1]


class JsonLinesDeliveryLog:
    """One JSON line per attempt, appended to a file; the last `keep` are also held in memory."""

    def __init__(self, path: str | Path, keep: int = 1000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._memory = MemoryDeliveryLog(keep)

    def record(self, attempt: DeliveryAttempt) -> None:
        self._memory.record(attempt)
        with self.path.open("ab") as f:
            f.write(orjson.dumps(attempt.document()) + b"\n")

    def recent(self, limit: int = 100) -> list[DeliveryAttempt]:
        return self._memory.recent(limit)

    def read(self) -> list[dict[str, Any]]:
        """Every attempt in the file, oldest first."""
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]


class Dispatcher:
    """Fire-and-forget delivery to every channel that wants an event, with retries and a delivery log."""

    def __init__(
        self,
        channels: Sequence[Channel],
        log: DeliveryLog,
        *,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_pending: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.channels = list(channels)
        self.log = log
        self._max_attempts = max(1, max_attempts)
        self._base_delay, self._max_delay = base_delay, max_delay
        self._max_pending = max_pending
        self._sleep, self._clock = sleep, clock
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def notify(self, notification: Notification) -> int:
        """Schedule delivery to every channel that wants it (call on the event loop); returns how many."""
        scheduled = 0
        for channel in self.channels:
            if not channel.wants(notification.event):
                continue
            if len(self._tasks) >= self._max_pending:
                self._record(notification, channel, 0, "dropped", error="too many deliveries pending")
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(channel, notification))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            scheduled += 1
        return scheduled

    async def drain(self, stop_after: float | None = None) -> int:
        """Wait until every scheduled delivery has succeeded or given up. With `stop_after` seconds (shutdown),
        the ones still retrying then are stopped and logged as dropped; returns how many were."""
        loop = asyncio.get_running_loop()
        deadline = None if stop_after is None else loop.time() + stop_after
        while self._tasks:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            await asyncio.wait(list(self._tasks), timeout=left)
        stopped = list(self._tasks)
        for task in stopped:
            task.cancel()
        await asyncio.gather(*stopped, return_exceptions=True)
        return len(stopped)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self._max_delay, self._base_delay * 2 ** (attempt - 1)))

    async def _deliver(self, channel: Channel, notification: Notification) -> None:
        try:
            await self._attempts(channel, notification)
        except asyncio.CancelledError:
            self._record(notification, channel, 0, "dropped", error="the gateway stopped before it was delivered")
            raise

    async def _attempts(self, channel: Channel, notification: Notification) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                status = await channel.notifier.send(notification)
            except DeliveryError as exc:
                final = not exc.retryable or attempt == self._max_attempts
                self._record(notification, channel, attempt, "failed" if final else "retrying", exc.status, str(exc))
                if final:
                    return
                await self._sleep(self.delay(attempt))
            except Exception as exc:  # a notifier bug must not kill the dispatcher or go unrecorded
                self._record(notification, channel, attempt, "failed", error=f"{type(exc).__name__}: {exc}")
                return
            else:
                self._record(notification, channel, attempt, "delivered", status)
                return

    def _record(
        self,
        notification: Notification,
        channel: Channel,
        attempt: int,
        status: str,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        self.log.record(
            DeliveryAttempt(
                notification.id,
                notification.event,
                channel.notifier.name,
                attempt,
                status,
                self._clock(),
                http_status,
                error,
            )
        )
