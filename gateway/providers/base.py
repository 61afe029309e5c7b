"""The seam between the proxy core and the provider kinds.

A provider kind (`openai`, `anthropic`, `gemini`, ...) owns everything that differs between wire
formats: which upstream URL a request goes to and how it authenticates, how the body is shaped
(model rewrite, asking for stream usage), how the response is framed and where its usage sits,
and how errors look. The proxy core only moves bytes and calls these methods:

    shape_openai / shape_raw  ->  Call + UpstreamRequest  ->  (httpx)  ->  new_meter(...)
    meter.feed(chunk) -> bytes to relay ...  meter.finish() -> tail  ->  meter.report()

Meters are incremental decoders in the manner of httpx's `_decoders.py`: `feed(bytes)` returns
what to relay now and `finish()` flushes. They never buffer a stream to read its usage; the only
bytes held back are those of one incomplete event when an injected usage chunk must be removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from gateway.usage import Usage

JSON = dict[str, Any]


@dataclass(slots=True)
class ProviderConfig:
    """One entry of config.yaml's `providers`, with its credentials resolved from the environment."""

    name: str
    kind: str
    base_url: str
    api_key: str | None = None
    api_key_env: str | None = None
    price_as: str | None = None
    timeout: float = 600.0
    headers: dict[str, str] = field(default_factory=dict)
    inject_stream_usage: bool = True
    api_version: str | None = None  # azure
    secret_id: str | None = None  # hunyuan (TC3-HMAC-SHA256)
    secret_key: str | None = None
    region: str | None = None  # hunyuan
    deployments: dict[str, str] = field(default_factory=dict)  # azure: deployment -> model

    @property
    def pricing_provider(self) -> str:
        return self.price_as or self.name


# Endpoints the providers do not bill: counting a prompt's tokens, OpenAI's moderations. Their
# requests are relayed and recorded, but nothing is estimated for them and no budget is held.
FREE_ENDPOINTS = frozenset({"anthropic.count_tokens", "gemini.countTokens", "responses.input_tokens", "moderations"})


@dataclass(slots=True)
class Call:
    """What the gateway knows about one routed request; filled by the provider kind."""

    provider: ProviderConfig
    endpoint: str  # "chat.completions", "anthropic.messages", ...
    model_requested: str | None
    model_upstream: str | None
    stream: bool
    thinking: bool = False
    strip_usage_chunk: bool = False  # the gateway injected include_usage; hide its chunk
    body: JSON | None = None  # parsed request body, as sent upstream
    path: str = ""  # upstream path below the provider's base_url, without the query
    body_changed: bool = False  # the kind rewrote `body`; it must be re-serialized


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class MeterReport:
    """What a meter read out of a response."""

    usage: Usage | None = None
    model: str | None = None  # as the upstream reported it
    error: str | None = None  # an error reported inside a successful (2xx) response
    # A stream cut before its final usage, whose start reported the input exactly (Anthropic's
    # message_start): its input side, for an estimate that counts only the output.
    input_usage: Usage | None = None
    thinking: bool = False  # the answer carried reasoning text: the model ran in thinking mode
    service_tier: str | None = None  # the tier the provider says it served the request at (OpenAI's service_tier)


class Meter(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Read a chunk of the response body; return the bytes to relay to the client now."""

    def finish(self) -> bytes:
        """The body ended; return any bytes still to relay."""

    def report(self) -> MeterReport: ...

    def output_text(self) -> str:
        """The generated text relayed so far, for estimating usage the provider did not report."""


class GatewayError(Exception):
    """An error the gateway answers itself, in the called API's format (with any extra headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type or code
        self.headers = headers or {}
        self.key_id: str | None = None  # the gateway key a refused request carried (its event's api_key_id)


def sse_data(body: bytes, event: bytes | None = None) -> bytes:
    """One server-sent event carrying `body`, on lines of its own whatever came before it."""
    return b"\n\n" + (b"event: " + event + b"\n" if event else b"") + b"data: " + body + b"\n\n"


class ProviderKind(Protocol):
    """One wire format. Instances are stateless; per-request state lives in Call and Meter."""

    name: ClassVar[str]

    def shape_openai(self, provider: ProviderConfig, op: str, body: JSON, model_upstream: str) -> Call:
        """A request that came in on an OpenAI-compatible route `/v1/{op}`, routed to this provider.

        `op` is e.g. "chat/completions"; the body's model is already resolved to `model_upstream`.
        Raises GatewayError when this kind cannot serve `op`.
        """

    def shape_raw(
        self,
        provider: ProviderConfig,
        method: str,
        path: str,
        body: JSON | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Call:
        """A raw pass-through request `/{provider}/{path}`: read endpoint, model and stream flag.

        `headers` are the client's request headers; some APIs say there what others say in the body
        (DashScope's `X-DashScope-SSE: enable` asks for a stream, Tencent Cloud's `X-TC-Action` names
        the endpoint).
        """

    def upstream_request(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes
    ) -> UpstreamRequest:
        """Build the upstream request: URL, credentials, body (re-serialized only if it changed).

        `headers` are the client's end-to-end headers, already without hop-by-hop and attribution
        headers; the kind replaces the client's credential header when the provider has a key.
        """

    def new_meter(self, call: Call, status: int, content_type: str) -> Meter: ...

    def error_body(self, status: int, code: str, message: str) -> bytes:
        """A gateway-generated error in this API's format."""

    def stream_error(self, code: str, message: str) -> bytes:
        """An error event for a server-sent event stream of this API, which its SDKs raise on."""

    def input_text(self, body: JSON | None) -> str:
        """The prompt text of a request body, for estimating input tokens."""
