"""The governance gate: gateway keys, rate limits and budgets on the request path.

    admit(call, attribution, headers) -> Admission   (or a GatewayError: 401, 403, 429)
    ... the request runs ...
    settle(admission, event)                          (the real cost and tokens replace the estimates)

A gateway key (`mw-...`) may arrive in any header a provider SDK sends its credential in
(`Authorization: Bearer`, `x-api-key`, `api-key`, `x-goog-api-key`) or in `X-Meterway-Key`; it
decides the tenant (an attribution header cannot override it) and is never forwarded upstream.
Budgets are race-free because the check and the reservation of a request's estimated maximum cost
happen together before anything is sent: in one process synchronously on the in-memory ledger;
where a `SharedLedger` is set (the store process of `serve --workers N`, or the Postgres catalog
with DuckLake) as one call to that single authority. Concurrent requests see each other's
reservations, so a budget is overshot only by what requests cost beyond their estimate: input is
estimated generously from its size (tool definitions included), output as `max_tokens` times `n`, or
4096 tokens per answer when a request sets no limit. A model the book has no price for is refused where a hard
budget applies, since its cost could not be counted. When the shared ledger
does not answer, a request that a budget applies to gets 503 `budget_unavailable`. All of it costs
nothing when no keys, budgets or rate limits are configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.attribution import Attribution
from gateway.metering import tier_asked
from gateway.providers.base import FREE_ENDPOINTS, Call, GatewayError
from governance.budgets import BudgetLedger, Refusal, Reservation
from governance.config import GovernanceConfig
from governance.keys import FAILURE_MESSAGES, GatewayKeys, KeyRecord, bearer_token, check_access
from governance.money import Money, estimate_max_cost
from governance.ratelimit import RateGrant, RateLimiter, RateRefusal
from governance.scope import RequestScope
from governance.shared_ledger import LedgerUnavailable, SharedLedger
from governance.shared_rates import RatesUnavailable, SharedRates
from pricing.pricer import Pricer
from storage.event import UsageEvent

log = logging.getLogger("meterway.governance")
KEY_PREFIX = "mw-"
_KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key", "x-meterway-key")
_KEY_HEADER_NAMES = frozenset(name.encode() for name in _KEY_HEADERS)  # ASGI header names are lower-case bytes
_OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens", "num_predict")
# what a provider bills as input: the prompt in every API's spelling, and the tool definitions sent with it
_INPUT_FIELDS = ("messages", "input", "prompt", "contents", "system", "instructions", "Messages", "tools", "functions",
                 "systemInstruction", "system_instruction", "tool_config", "toolConfig")  # fmt: skip
IMAGE_TOKENS = 16_384  # the most one image is billed as input: Qwen-VL at its largest size (others bill less)
_IMAGE_TYPES = frozenset({"image_url", "input_image", "image"})


@dataclass(slots=True)
class Admission:
    key: KeyRecord | None = None
    key_token: bytes | None = None  # the gateway key as sent: no header holding it is forwarded
    reservation: Reservation | None = None
    grant: RateGrant | None = None


OPEN = Admission()


class Gate:
    def __init__(
        self,
        config: GovernanceConfig,
        keys: GatewayKeys | None,
        ledger: BudgetLedger,
        limiter: RateLimiter,
        pricer: Callable[[], Pricer],
        notify: Callable[[Any], None] | None = None,
        shared: SharedLedger | None = None,
        shared_rates: SharedRates | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.ledger = ledger
        self.limiter = limiter
        self.shared = shared  # where set, budgets are reserved and settled there instead of in `ledger`
        self.shared_rates = shared_rates  # where set, rate limits are taken there instead of from `limiter`
        self._releasing: set[asyncio.Task[None]] = set()
        self._pricer = pricer
        self._notify = notify
        self.require_keys = config.auth.require_keys
        self.active = bool(keys is not None or config.budgets or config.rate_limits)

    async def admit(
        self, request_id: str, call: Call, attr: Attribution, headers: list[tuple[bytes, bytes]], at: datetime
    ) -> Admission:
        if not self.active:
            return OPEN
        admission = Admission()
        try:
            return await self._admit(admission, request_id, call, attr, headers, at)
        except GatewayError as err:  # a refused request still names its key in its event
            err.key_id = admission.key.id if admission.key else None
            raise

    async def _admit(
        self,
        admission: Admission,
        request_id: str,
        call: Call,
        attr: Attribution,
        headers: list[tuple[bytes, bytes]],
        at: datetime,
    ) -> Admission:
        self._authenticate(admission, call, attr, headers)
        if not (self.config.rate_limits or self.config.budgets):
            return admission if admission.key is not None else OPEN
        scope = RequestScope(
            tenant=attr.tenant_id, key=admission.key.id if admission.key else None, feature=attr.feature,
            provider=call.provider.name, model=call.model_upstream, model_requested=call.model_requested,
        )  # fmt: skip
        input_tokens = _input_estimate(call)
        max_output = _max_output(call.body)
        if self.config.rate_limits:
            grant = await self._acquire(scope, input_tokens + (max_output or 0))
            if isinstance(grant, RateRefusal):
                raise GatewayError(
                    429, "rate_limited", grant.message, "rate_limited", {"retry-after": grant.retry_after_header()}
                )
            admission.grant = grant
        if self.config.budgets and _may_cost(call):
            budgets = self.ledger.matching(scope)
            if budgets:
                estimate = estimate_max_cost(
                    self._pricer(), call.provider.pricing_provider, call.model_upstream or "", input_tokens,
                    max_output, at, attr.tenant_id, answers=_answers(call.body) if call.body else 1,
                    service_tier=tier_asked(call),
                )  # fmt: skip
                if estimate is None and (hard := [b.name for b in budgets if b.hard]):  # nothing would bound it
                    self._release_grant(admission)
                    model = call.model_upstream or call.model_requested or "(none)"
                    raise GatewayError(
                        403, "unpriced_model", f"model {model!r} of provider {call.provider.name!r} has no price in "
                        f"the price book, so the hard budget {hard[0]!r} cannot bound its cost; add it to the book",
                        "unpriced_model",
                    )  # fmt: skip
                if self.shared is None:
                    held = self.ledger.reserve(request_id, budgets, estimate, at)
                else:
                    try:
                        held = await self.shared.reserve(request_id, budgets, estimate, at)
                    except LedgerUnavailable as exc:
                        self._release_grant(admission)
                        log.error("budget check failed: %s", exc)
                        raise GatewayError(
                            503, "budget_unavailable", "the budget ledger is not available", "budget_unavailable"
                        ) from None
                if isinstance(held, Refusal):
                    self._release_grant(admission)
                    retry = max(0, int((held.resets_at - at).total_seconds()))
                    # Retrying before the period resets cannot succeed: SDKs that honour retry-after however long
                    # (Anthropic's sleeps for hours) are told not to retry; the reset time is in the message.
                    wait = {"retry-after": str(retry), "x-should-retry": "false"}
                    raise GatewayError(429, "budget_exceeded", held.message, "budget_exceeded", wait)
                admission.reservation = held
        return admission

    def _authenticate(
        self, admission: Admission, call: Call, attr: Attribution, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if self.keys is None:
            return
        raw = _find_key(headers)
        if raw is None:
            if self.require_keys:
                _disown(attr)
                raise GatewayError(401, "invalid_api_key", "this gateway needs a gateway key (mw-...)", "unauthorized")
            return
        found = self.keys.authenticate(raw)
        if not isinstance(found, KeyRecord):
            _disown(attr)
            if found in ("revoked", "expired") and (known := self.keys.identify(raw)) is not None:
                admission.key, attr.tenant_id = known, known.tenant  # whose key it was, for the audit trail
            raise GatewayError(
                401, "invalid_api_key", FAILURE_MESSAGES.get(found, "invalid gateway key"), "unauthorized"
            )
        admission.key, admission.key_token = found, raw.encode("latin-1")
        attr.tenant_id = found.tenant  # the key decides the tenant; a header cannot override it
        attr.user_id = found.user or attr.user_id
        attr.feature = found.feature or attr.feature
        denied = check_access(found, call.provider.name, call.model_upstream or "")
        if denied:
            raise GatewayError(403, "permission_denied", denied, "forbidden")

    async def settle(self, admission: Admission, event: UsageEvent) -> None:
        if admission is OPEN:
            return
        event.api_key_id = admission.key.id if admission.key else None
        if admission.grant is not None:
            if self.shared_rates is None:
                self.limiter.settle(admission.grant, event.total_tokens)
            else:
                try:
                    await self.shared_rates.settle(admission.grant, event.total_tokens)
                except RatesUnavailable as exc:
                    log.error("rate limit settlement failed: %s", exc)
        if admission.reservation is not None:
            cost = None
            if event.total_cost is not None and event.currency:
                cost = Money(Decimal(event.total_cost), event.currency)
            if self.shared is None:
                crossings = self.ledger.settle(admission.reservation, cost)
            else:
                try:
                    crossings = await self.shared.settle(admission.reservation, cost)
                except LedgerUnavailable as exc:
                    log.error("budget settlement of %s failed: %s", admission.reservation.request_key, exc)
                    return
            for crossing in crossings:
                if self._notify is not None:
                    self._notify(crossing)

    def settle_later(self, admission: Admission, event: UsageEvent) -> None:
        """`settle` from code that cannot wait for it (an exchange being cancelled)."""
        if admission is not OPEN:
            self._in_background(self.settle(admission, event), f"settlement of {event.request_id}")

    def release(self, admission: Admission) -> None:
        """The request never reached a provider: give back what it held."""
        if admission.reservation is not None:
            if self.shared is None:
                self.ledger.release(admission.reservation)
            else:
                reservation = admission.reservation  # expires after its TTL if the release does not arrive
                self._in_background(self.shared.release(reservation), f"budget release of {reservation.request_key}")
        self._release_grant(admission)

    async def _acquire(self, scope: RequestScope, estimated_tokens: int) -> RateGrant | RateRefusal | None:
        if self.shared_rates is None:
            return self.limiter.acquire(scope, estimated_tokens)
        try:
            return await self.shared_rates.acquire(scope, estimated_tokens)
        except RatesUnavailable as exc:  # a provider's own limits still apply; see governance.shared_rates
            log.error("rate limits not checked for this request: %s", exc)
            return None

    def _in_background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run a release or a settlement without holding up the request; a failure is logged."""
        task = asyncio.get_running_loop().create_task(_logged(work, what))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def _release_grant(self, admission: Admission) -> None:
        if admission.grant is not None:
            if self.shared_rates is None:
                self.limiter.release(admission.grant)
            else:
                self._in_background(self.shared_rates.release(admission.grant), "rate limit release")  # refills anyway
            admission.grant = None


async def _logged(work: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await work
    except (LedgerUnavailable, RatesUnavailable) as exc:
        log.error("%s failed: %s", what, exc)


def _disown(attr: Attribution) -> None:
    """A request refused for want of a valid key belongs to nobody: the headers that name its tenant, user and
    feature are the caller's word, which only a key makes good (its event, reports and metric labels say none)."""
    attr.tenant_id = attr.user_id = attr.feature = attr.session_id = None
    attr.tags = {}


def _find_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name in _KEY_HEADER_NAMES:
            token = value.decode("latin-1").strip()
            if name == b"authorization":
                token = bearer_token(token) or ""
            if token.startswith(KEY_PREFIX):
                return token
    return None


def _may_cost(call: Call) -> bool:
    """Whether a budget has anything to hold for `call`. A request with neither a body nor a model (listing
    models or files, reading a batch) runs no model, and the providers do not bill FREE_ENDPOINTS: a hard
    budget must not refuse those as unpriced, nor hold money for them."""
    if call.endpoint in FREE_ENDPOINTS:
        return False
    return call.body is not None or bool(call.model_upstream or call.model_requested)


def _input_estimate(call: Call) -> int:
    """A quick upper estimate of input tokens from the size of what is billed as input (no tokenizer on the
    hot path): a token is at least two bytes of UTF-8 in English (about four) and in Chinese (about 2.4).
    An image counts `IMAGE_TOKENS` however it is sent (a URL, or base64 that would count far more by size)."""
    body = call.body
    if not body:
        return 0
    size = 0
    for key in _INPUT_FIELDS:
        value = body.get(key)
        if value is not None:
            text = str(value)
            size += _size_with_images(value) if "image" in text else len(text.encode())
    return size // 2 + 1


def _size_with_images(value: Any) -> int:
    """The bytes `_input_estimate` counts for a JSON value that holds images: each image as
    `IMAGE_TOKENS` tokens, everything else by its size."""
    if isinstance(value, dict):
        if _is_image(value):
            return IMAGE_TOKENS * 2
        total = 0
        for key, item in value.items():
            if key == "images" and isinstance(item, list):  # Ollama: base64 images beside the text
                total += len(item) * IMAGE_TOKENS * 2
            else:
                total += len(str(key).encode()) + _size_with_images(item)
        return total
    if isinstance(value, list):
        return sum(_size_with_images(item) for item in value)
    return len(str(value).encode())


def _is_image(part: dict[str, Any]) -> bool:
    """An image part of any API: OpenAI `image_url` / `input_image`, Anthropic `image`, Hunyuan `Type`,
    DashScope `{"image": ...}`, or inline data with an image MIME type (Gemini, Anthropic's source)."""
    if part.get("type") in _IMAGE_TYPES or part.get("Type") in _IMAGE_TYPES or isinstance(part.get("image"), str):
        return True
    mime = part.get("mimeType") or part.get("mime_type") or part.get("media_type")
    return isinstance(mime, str) and mime.startswith("image/")


def _max_output(body: dict[str, Any] | None) -> int | None:
    """The output tokens a request allows, times the answers it asks for (`n`); None when it sets no limit."""
    if not body:
        return None
    for holder in (body, body.get("generationConfig"), body.get("parameters"), body.get("options")):
        if isinstance(holder, dict):
            for key in _OUTPUT_LIMITS:
                value = holder.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value * _answers(body)
    return None


def _answers(body: dict[str, Any]) -> int:
    config = body.get("generationConfig")
    for value in (body.get("n"), config.get("candidateCount") if isinstance(config, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return 1
