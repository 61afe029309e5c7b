"""The built-in `demo` provider: a simulated OpenAI-compatible upstream inside the gateway.

It lets `make run` and `meterway demo` show real metering with no provider key: chat
completions and Responses API answers (streamed token by token, with realistic pacing and usage),
completions and embeddings, answered by an httpx transport instead of the network. Everything else about a
demo request — routing, metering, pricing, events — is the same code path as for a real one.
A request header `x-demo-error: 429|500|503` makes it answer with that error, for trying alerts.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import orjson

from gateway.estimate import count_prompt, count_tokens
from gateway.providers import openai
from gateway.providers.base import sse_data

# Canned answers, picked by a keyword of the prompt, so a demo conversation reads like one.
_ANSWERS: tuple[tuple[str, str], ...] = (
    ("agreement", "The agreement runs for twelve months and renews automatically unless either party gives sixty "
     "days' notice. Fees are invoiced monthly in arrears and are due within thirty days. Liability is capped at the "
     "fees paid in the previous twelve months, and either party may terminate for a material breach that is not "
     "cured within thirty days. The supplier must keep customer data in the agreed region and report any security "
     "incident within forty-eight hours."),
    ("meeting notes", "- The billing export ships on Friday, after one more review of currency rounding.\n- Support "
     "tickets about late invoices fell by a third since the reminder emails went out.\n- Open question: move the "
     "nightly reconciliation job to an earlier slot so reports are ready by 8:00."),
    ("passages", "According to the passages, you can return an unused item within 30 days of delivery for a full "
     "refund. Shipping costs are refunded only if the item arrived damaged or was not what you ordered. Refunds go "
     "back to the original payment method within five business days."),
    ("into English", "The meeting has moved to Thursday afternoon. Please bring the updated budget figures and the "
     "draft contract so we can review them together."),
    ("into Chinese", "会议改到周四下午。请带上更新后的预算数字和合同草稿，我们一起审阅。"),
    ("物流", "很抱歉给您带来不便。物流信息有时会延迟一到两天更新。"
     "如果明天仍没有变化，请回复您的订单号，我们会联系快递公司为您核实。"),
    ("password", "To reset your password, open Settings, choose Security and select Reset password. We will email "
     "you a link that stays valid for 30 minutes. If it does not arrive, check your spam folder or ask an "
     "administrator to send it again."),
    ("invoice", "The first charge is a temporary authorization that your bank releases within a few days; the "
     "second one is the actual payment for March. If both are still there next week, reply with the invoice "
     "number and we will refund the duplicate."),
    ("", "Sure. The quickest way is to open the dashboard, filter by the period you need and export the table as "
     "CSV. If you need the same report every week, a scheduled export saves you the manual step."),
)  # fmt: skip


def answer_for(prompt: str) -> str:
    """The demo's answer to a prompt: the canned answer whose keyword the prompt contains."""
    return next(text for keyword, text in _ANSWERS if keyword in prompt)


def _pieces(text: str) -> list[str]:
    """Stream pieces: words with their leading space, or a few characters at a time for CJK text."""
    if " " not in text:
        return [text[i : i + 3] for i in range(0, len(text), 3)]
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


class DemoKind(openai.OpenAIKind):
    name: ClassVar[str] = "demo"

    def transport(self) -> httpx.AsyncBaseTransport:
        return DemoTransport()


class DemoTransport(httpx.AsyncBaseTransport):
    """Answers like an OpenAI-compatible API. `token_delay` paces streamed tokens (seconds)."""

    def __init__(self, token_delay: float = 0.01, seed: int | None = None) -> None:
        self.token_delay = token_delay
        self._random = random.Random(seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        forced = request.headers.get("x-demo-error")
        if forced and forced.isdecimal():
            status = int(forced)
            body = openai.error_body(status, "demo_error", f"simulated upstream error {status}")
            return httpx.Response(status, content=body, headers={"content-type": "application/json"})
        try:
            payload: dict[str, Any] = orjson.loads(await request.aread() or b"{}")
        except orjson.JSONDecodeError:
            body = openai.error_body(400, "invalid_json", "demo upstream: body is not JSON")
            return httpx.Response(400, content=body, headers={"content-type": "application/json"})
        model = str(payload.get("model") or "demo")
        path = request.url.path.rstrip("/")
        if path.endswith("/embeddings"):
            return self._embeddings(payload, model)
        if path.endswith("/models"):
            listing = {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "demo"}]}
            return httpx.Response(200, content=orjson.dumps(listing), headers={"content-type": "application/json"})
        prompt_tokens = count_prompt(openai.request_text(payload), payload)
        words = self._answer(payload, openai.request_text(payload))
        if path.endswith("/responses"):
            return await self._response(model, words, prompt_tokens, payload.get("stream") is True)
        if payload.get("stream") is True:
            include = bool((payload.get("stream_options") or {}).get("include_usage"))
            stream = _Stream(self._chunks(model, words, prompt_tokens, include))
            return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})
        text = "".join(words)
        completion = {
            "id": _id(text),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": _usage(prompt_tokens, count_tokens(text)),
        }
        await asyncio.sleep(self.token_delay * 3)
        return httpx.Response(200, content=orjson.dumps(completion), headers={"content-type": "application/json"})

    def _answer(self, payload: dict[str, Any], prompt: str) -> list[str]:
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens") or payload.get("max_output_tokens")
        pieces = _pieces(answer_for(prompt))
        return pieces[: max(1, limit)] if isinstance(limit, int) else pieces

    async def _chunks(
        self, model: str, words: list[str], prompt_tokens: int, include_usage: bool
    ) -> AsyncIterator[bytes]:
        cid, created = _id("".join(words)), int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for word in words:
            await asyncio.sleep(self.token_delay)
            yield chunk({"content": word})
        yield chunk({}, "stop")
        if include_usage:
            usage = _usage(prompt_tokens, count_tokens("".join(words)))
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage}  # fmt: skip
            yield b"data: " + orjson.dumps(obj) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def _response(self, model: str, words: list[str], prompt_tokens: int, stream: bool) -> httpx.Response:
        """A Responses API answer: one output message, or its stream of events ending in `response.completed`."""
        text = "".join(words)
        rid, created = "resp_" + _id(text).removeprefix("chatcmpl-"), int(time.time())
        message = {"type": "message", "id": "msg_" + rid[5:], "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
        output_tokens = count_tokens(text)
        usage = {
            "input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + output_tokens,
        }  # fmt: skip
        done = {"id": rid, "object": "response", "created_at": created, "status": "completed", "model": model,
                "output": [message], "usage": usage}  # fmt: skip
        if not stream:
            await asyncio.sleep(self.token_delay * 3)
            return httpx.Response(200, content=orjson.dumps(done), headers={"content-type": "application/json"})

        async def events() -> AsyncIterator[bytes]:
            started = {**done, "status": "in_progress", "output": [], "usage": None}
            sequence = iter(range(len(words) + 2))
            yield _event("response.created", {"response": started, "sequence_number": next(sequence)})
            for word in words:
                await asyncio.sleep(self.token_delay)
                delta = {"item_id": message["id"], "output_index": 0, "content_index": 0, "delta": word}
                yield _event("response.output_text.delta", {**delta, "sequence_number": next(sequence)})
            yield _event("response.completed", {"response": done, "sequence_number": next(sequence)})

        return httpx.Response(200, stream=_Stream(events()), headers={"content-type": "text/event-stream"})

    def _embeddings(self, payload: dict[str, Any], model: str) -> httpx.Response:
        inputs = payload.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(len(items))]
        tokens = sum(count_tokens(str(x)) for x in items)
        body = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return httpx.Response(200, content=orjson.dumps(body), headers={"content-type": "application/json"})


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk


def _event(kind: str, fields: dict[str, Any]) -> bytes:
    return sse_data(orjson.dumps({"type": kind, **fields}), kind.encode())


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _id(text: str) -> str:
    return "chatcmpl-demo-" + hashlib.sha1(f"{text}{time.time_ns()}".encode()).hexdigest()[:20]
