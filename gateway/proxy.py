"""Forwarding and streaming: the request path from the client to the upstream and back.

    read body -> route (OpenAI route by model, or raw /{provider}/{path}) -> attribution
    -> kind builds the upstream request -> the upstream client -> meter relays bytes as they arrive
    -> event built, priced, journaled -> last bytes to the client

The event is journaled before the client receives the end of its response, so every answered
request has its row even if the process dies right after. A watcher turns a client disconnect
into a cancellation of the exchange, which still records an event.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.attribution import Attribution, AttributionReader
from gateway.bodies import broken_stream, error_text, json_object, parse_raw, scrub
from gateway.estimate import encoder
from gateway.gate import OPEN, Admission, Gate
from gateway.metering import Outcome, build_event
from gateway.providers.base import Call, GatewayError, Meter, ProviderConfig, ProviderKind
from gateway.routing import ModelRouter
from gateway.upstream import Upstream, UpstreamConnectError, UpstreamError, UpstreamResponse, UpstreamTimeout
from gateway.usage import Usage
from governance.money import plain
from pricing.pricer import EventPricing, candidates
from storage.event import UsageEvent

log = logging.getLogger("meterway.proxy")
CODE_SHUTDOWN = "gateway_shutting_down"  # the error code of an answer the server's shutdown cut short
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HOP_BY_HOP = frozenset(
    b"host content-length connection keep-alive proxy-authenticate proxy-authorization proxy-connection "
    b"te trailer transfer-encoding upgrade accept-encoding".split()
)
_DROP_RESPONSE = frozenset(
    b"content-length connection keep-alive transfer-encoding date server proxy-connection".split()
)
_STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl")
_JSON_TYPE = [(b"content-type", b"application/json")]
WATCH_AFTER = 0.1  # seconds an exchange runs before a client disconnect is watched for


@dataclass(slots=True)
class Exchange:
    request_id: str
    ts: datetime
    started: float
    done: bool = False
    disconnected: bool = False
    responded: bool = False  # the response has started; an error can no longer be answered
    admission: Admission = field(default_factory=lambda: OPEN)


class Proxy:
    def __init__(
        self,
        *,
        router: ModelRouter,
        providers: dict[str, ProviderConfig],
        kinds: dict[str, ProviderKind],
        attribution: AttributionReader,
        pricer: EventPricing,
        submit: Callable[[UsageEvent], None],
        upstreams: dict[str, Upstream],
        default_upstream: Upstream,
        max_body_bytes: int,
        gate: Gate | None = None,
    ) -> None:
        self.router = router
        self.providers = providers
        self.kinds = kinds
        self.attribution = attribution
        self.pricer = pricer
        self.submit = submit
        self.upstreams = upstreams
        self.default_upstream = default_upstream
        self.max_body_bytes = max_body_bytes
        self.gate = gate
        self._drop_request = _HOP_BY_HOP | attribution.header_names
        self._openai = kinds["openai"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = Exchange(os.urandom(12).hex(), datetime.now(UTC), time.perf_counter())
        path: str = scope["path"]
        api = self._openai  # the error format of the API that was called
        call: Call | None = None
        attr = Attribution()
        try:
            if path.startswith("/v1/"):
                if scope["method"] != "POST":
                    served = "the gateway routes POST requests by the body's model (GET /v1/models lists them)"
                    message = f"{scope['method']} {path} is not served: {served}"
                    raise GatewayError(405, "method_not_allowed", message, headers={"allow": "POST"})
                raw = await self._read_body(receive)
                call = self._route_openai(path[4:], raw)
            else:
                name, _, rest = path[1:].partition("/")
                provider = self.providers.get(name)
                if provider is None:
                    raise GatewayError(404, "unknown_provider", f"no provider named {name!r} is configured")
                api = self.kinds[provider.kind]  # from here on, errors answer in the provider's own format
                raw = await self._read_body(receive)
                client_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
                call = api.shape_raw(provider, scope["method"], rest, parse_raw(raw, scope), client_headers)
            attr = self.attribution.read(scope["headers"], call.body)
            if self.gate is not None:
                ex.admission = await self.gate.admit(ex.request_id, call, attr, scope["headers"], ex.ts)
            await self._forward(ex, scope, receive, send, call, attr, raw, api)
        except GatewayError as err:
            await self._answer_error(ex, send, api, call, attr, err)
        except Exception as exc:  # a bug must still answer in the API's format and leave its event
            log.exception("request %s failed inside the gateway", ex.request_id)
            failure = GatewayError(500, "internal_error", f"the gateway failed: {type(exc).__name__}", "internal_error")
            await self._answer_error(ex, send, api, call, attr, failure)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise GatewayError(499, "client_disconnect", "client disconnected", "client_disconnect")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise GatewayError(
                        413, "request_too_large", f"request body exceeds the limit of {self.max_body_bytes} bytes"
                    )
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _route_openai(self, op: str, raw: bytes) -> Call:
        body = json_object(raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise GatewayError(400, "missing_model", "request body has no 'model' (a string naming the model)")
        found = self.router.resolve(model)
        if found is None:
            raise GatewayError(404, "model_not_found", f"The model '{model}' is not configured on this gateway")
        provider, upstream_model = found
        return self.kinds[provider.kind].shape_openai(provider, op, body, upstream_model)

    async def _forward(
        self,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        call: Call,
        attr: Attribution,
        raw: bytes,
        api: ProviderKind,
    ) -> None:
        provider = call.provider
        kind = self.kinds[provider.kind]
        key = ex.admission.key_token  # a gateway key is never sent upstream, in whichever headers it came
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in self._drop_request and (key is None or key not in v)
        ]
        headers.append(("accept-encoding", "identity"))
        query = scope.get("query_string", b"").decode("latin-1")
        up = kind.upstream_request(call, scope["method"], query, headers, raw)
        upstream = self.upstreams.get(provider.name, self.default_upstream)
        outcome = Outcome(status=502, attribution=attr)
        task = asyncio.current_task()
        watch = _Watch(receive, ex, task)
        meter: Meter | None = None
        response: UpstreamResponse | None = None
        try:
            try:
                response = await upstream.send(up.method, up.url, up.headers, up.body, provider.timeout)
            except UpstreamTimeout:
                outcome.reached_upstream = True
                raise GatewayError(
                    504, "upstream_timeout", f"provider {provider.name!r} did not answer within {provider.timeout:g}s",
                    "timeout",
                ) from None  # fmt: skip
            except UpstreamConnectError as exc:
                raise GatewayError(
                    502, "upstream_unreachable", f"cannot reach provider {provider.name!r}: {exc}", "upstream_error"
                ) from None
            except UpstreamError as exc:
                outcome.reached_upstream = True
                raise GatewayError(
                    502, "upstream_error", f"provider {provider.name!r} failed: {exc}", "upstream_error"
                ) from None
            outcome.reached_upstream = True
            outcome.status = response.status
            ctype = response.content_type
            meter = kind.new_meter(call, response.status, ctype)
            out_headers = [(k, v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE]
            out_headers.append((b"x-meterway-request-id", ex.request_id.encode()))
            if response.status < 400 and (call.stream or ctype.startswith(_STREAM_TYPES)):
                call.stream = True  # what the response is, whatever the request said
                await self._relay_stream(ex, send, response, meter, out_headers, outcome, call, kind, api)
            else:
                await self._relay_whole(ex, send, response, meter, out_headers, outcome, call, kind, up.method)
        except asyncio.CancelledError:
            if not ex.disconnected or task is None:  # the server is stopping and its grace period is over
                await self._cut_at_shutdown(ex, send, call, kind, api, response, meter, outcome, task)
                return
            task.uncancel()
            # The request was in the provider's hands, or on its way: a provider bills a prompt it was sent even
            # if nobody reads the answer, so the prompt is estimated, as it is when the provider does not answer.
            outcome.reached_upstream = True
            outcome.error_type, outcome.error_message = "client_disconnect", "client disconnected"
            outcome.status = 499 if outcome.status >= 400 or meter is None else outcome.status
            await self._record(ex, call, kind, meter, outcome)
        except GatewayError as err:
            outcome.status, outcome.error_type, outcome.error_message = err.status, err.error_type, err.message
            await self._record(ex, call, kind, meter, outcome)
            ex.done = True
            if not ex.responded:
                ex.responded = True
                await send_json(send, err.status, api.error_body(err.status, err.code, err.message), ex.request_id)
        finally:
            ex.done = True
            watch.cancel()

    async def _relay_stream(
        self,
        ex: Exchange,
        send: Send,
        response: UpstreamResponse,
        meter: Meter,
        headers: list[tuple[bytes, bytes]],
        outcome: Outcome,
        call: Call,
        kind: ProviderKind,
        api: ProviderKind,
    ) -> None:
        ex.responded = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        data = b""
        try:
            async for chunk in response.iter_chunks():
                data = meter.feed(chunk)
                if data:
                    if outcome.ttft_ms is None:
                        outcome.ttft_ms = (time.perf_counter() - ex.started) * 1000
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            tail = meter.finish()
        except UpstreamTimeout as exc:
            outcome.error_type, outcome.error_message = "timeout", str(exc)
            tail = meter.finish()
            tail += broken_stream(api, response, f"provider {call.provider.name!r} stopped sending", tail or data)
        except UpstreamError as exc:
            outcome.error_type, outcome.error_message = "stream_error", f"upstream stream broke: {exc}"
            tail = meter.finish()
            tail += broken_stream(api, response, f"provider {call.provider.name!r} broke off", tail or data)
        finally:
            await response.close()
        report = meter.report()
        if outcome.error_type is None and report.error:
            outcome.error_type, outcome.error_message = "upstream_error", report.error[:1000]
        await self._record(ex, call, kind, meter, outcome)
        ex.done = True
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _relay_whole(
        self,
        ex: Exchange,
        send: Send,
        response: UpstreamResponse,
        meter: Meter,
        headers: list[tuple[bytes, bytes]],
        outcome: Outcome,
        call: Call,
        kind: ProviderKind,
        method: str,
    ) -> None:
        try:
            body = await response.read()
        except UpstreamTimeout:
            raise GatewayError(
                504, "upstream_timeout", f"provider {call.provider.name!r} stopped answering", "timeout"
            ) from None
        except UpstreamError as exc:
            raise GatewayError(502, "upstream_error", f"provider {call.provider.name!r} failed: {exc}") from None
        finally:
            await response.close()
        body = meter.feed(body) + meter.finish()
        report = meter.report()
        if response.status >= 400:
            body = scrub(body, call.provider)
            outcome.error_type = "upstream_error"
            outcome.error_message = error_text(body)
        elif report.error:
            outcome.error_type, outcome.error_message = "upstream_error", report.error[:1000]
        event = await self._record(ex, call, kind, meter, outcome)
        if method == "HEAD":  # no body, but the length of the one a GET would have
            headers += [(k, v) for k, v in response.raw_headers if k.lower() == b"content-length"]
        else:
            headers.append((b"content-length", str(len(body)).encode()))
        if event.cost_reporting is not None:
            headers.append((b"x-meterway-cost", plain(event.cost_reporting).encode()))
        ex.done = ex.responded = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _cut_at_shutdown(
        self,
        ex: Exchange,
        send: Send,
        call: Call,
        kind: ProviderKind,
        api: ProviderKind,
        response: UpstreamResponse | None,
        meter: Meter | None,
        outcome: Outcome,
        task: asyncio.Task[Any] | None,
    ) -> None:
        """The server stopped and its grace period is over while this request was still with the provider:
        record it (the prompt was sent, so it is estimated), then end the answer as the client's SDK reads an
        error: a 503 in the called API's format, or a stream's error event after what was relayed."""
        message = "the gateway stopped before the answer ended"
        outcome.reached_upstream = True
        outcome.error_type, outcome.error_message = "shutdown", message
        outcome.status = outcome.status if ex.responded else 503
        self._record_at_once(ex, call, kind, meter, outcome)
        if task is None:
            raise asyncio.CancelledError
        task.uncancel()
        ex.done = True
        if not ex.responded:
            ex.responded = True
            await send_json(send, 503, api.error_body(503, CODE_SHUTDOWN, message), ex.request_id)
        else:
            tail = b"" if response is None else broken_stream(api, response, "the gateway stopped", b"", CODE_SHUTDOWN)
            await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _record_at_once(
        self, ex: Exchange, call: Call, kind: ProviderKind, meter: Meter | None, outcome: Outcome
    ) -> None:
        """`_record` for a cancelled exchange, without awaiting: the event is journaled before the server's
        shutdown flushes the writer (loading the tokenizer here, if an estimate needs it, blocks the stopping
        loop for a moment). Budgets and rate limits are settled in the background."""
        outcome.duration_ms = (time.perf_counter() - ex.started) * 1000
        event = build_event(ex.request_id, ex.ts, call, kind, meter, outcome, self.pricer)
        if self.gate is not None:
            event.api_key_id = ex.admission.key.id if ex.admission.key else None
            self.gate.settle_later(ex.admission, event)
        self.submit(event)

    async def _record(
        self, ex: Exchange, call: Call, kind: ProviderKind, meter: Meter | None, outcome: Outcome
    ) -> UsageEvent:
        outcome.duration_ms = (time.perf_counter() - ex.started) * 1000
        report = meter.report() if meter is not None else None
        if report is not None and report.usage is None and outcome.reached_upstream:
            await asyncio.to_thread(encoder)  # the tokenizer loads once, off the loop, only when first needed
        event = build_event(ex.request_id, ex.ts, call, kind, meter, outcome, self.pricer, report)
        if self.gate is not None:
            await self.gate.settle(ex.admission, event)
        self.submit(event)
        return event

    async def _answer_error(
        self, ex: Exchange, send: Send, api: ProviderKind, call: Call | None, attr: Attribution, err: GatewayError
    ) -> None:
        """An error found before anything was sent upstream: answer it and record it."""
        duration = (time.perf_counter() - ex.started) * 1000
        event = UsageEvent(
            request_id=ex.request_id,
            ts=ex.ts,
            status_code=err.status,
            duration_ms=duration,
            error_type=err.error_type,
            error_message=err.message,
            tenant_id=attr.tenant_id,
            user_id=attr.user_id,
            feature=attr.feature,
            session_id=attr.session_id,
            tags=attr.tags,
            reporting_currency=self.pricer.reporting_currency,
        )
        if call is not None:  # priced like any request with no usage: a zero under the entry it would have had
            event.provider, event.endpoint = call.provider.name, call.endpoint
            event.model_requested, event.model, event.stream = call.model_requested, call.model_upstream, call.stream
            event.thinking = thinking = bool(call.thinking)
            models = candidates(call.model_upstream, call.model_requested)
            try:
                event.set_price(self.pricer.price_event(
                    Usage(), provider=call.provider.pricing_provider, models=models, at=ex.ts, thinking=thinking,
                    tenant=attr.tenant_id,
                ))  # fmt: skip
            except Exception:  # the answer and the event matter more: it stays unpriced
                log.exception("request %s: pricing its refusal failed", ex.request_id)
        if self.gate is not None:
            self.gate.release(ex.admission)
            event.api_key_id = ex.admission.key.id if ex.admission.key else err.key_id
        self.submit(event)
        if err.status != 499 and not ex.responded:
            ex.responded = True
            body = api.error_body(err.status, err.code, err.message)
            await send_json(send, err.status, body, ex.request_id, err.headers)


class _Watch:
    """Turns a client disconnect into a cancellation of the exchange.

    The watching task starts only once the exchange has run for `WATCH_AFTER` seconds: an answer
    faster than that never pays for a task, and a client that leaves earlier is noticed then
    (uvicorn keeps the disconnect for the next `receive()`). Model calls that cost anything worth
    stopping run far longer.
    """

    __slots__ = ("_ex", "_receive", "_target", "_task", "_timer")

    def __init__(self, receive: Receive, ex: Exchange, target: asyncio.Task[Any] | None) -> None:
        self._receive, self._ex, self._target = receive, ex, target
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        if not self._ex.done:
            self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self._ex.done and self._target is not None:
            self._ex.disconnected = True
            self._target.cancel()

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


async def send_json(send: Send, status: int, body: bytes, request_id: str, extra: dict[str, str] | None = None) -> None:
    headers = [
        *_JSON_TYPE,
        (b"content-length", str(len(body)).encode()),
        (b"x-meterway-request-id", request_id.encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
