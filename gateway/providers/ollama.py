"""The `ollama` kind: Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`), and its `/v1`.

Native chat and generate requests stream unless the body says `"stream": false`, as NDJSON: one
object per line, the last (`"done": true`) carrying the counts (`prompt_eval_count` in,
`eval_count` out). An error is an object `{"error": "..."}`, also as a line of a stream after
content has been sent. Ollama needs no key; a configured one is sent as a Bearer token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from gateway.providers import common
from gateway.providers.base import JSON, Call, Meter, ProviderConfig
from gateway.providers.frames import FrameMeter, RunningTotalsReader, string_at
from gateway.providers.native import NativeKind
from gateway.usage import Usage, as_int

_STREAMING = ("ollama.chat", "ollama.generate")


def endpoint_for_path(path: str) -> str:
    clean = path.strip("/")
    name = clean.removeprefix("api/").split("/", 1)[0]
    return "ollama." + (name or "root")


class NativeReader(RunningTotalsReader):
    usage_marker: ClassVar[bytes] = b'eval_count"'  # prompt_eval_count and eval_count

    def usage_of(self, obj: JSON) -> Usage | None:
        if "prompt_eval_count" not in obj and "eval_count" not in obj:
            return None
        return Usage(input_tokens=as_int(obj.get("prompt_eval_count")), output_tokens=as_int(obj.get("eval_count")))

    def model_of(self, obj: JSON) -> str | None:
        return string_at(obj, "model")

    def text_of(self, obj: JSON) -> str:
        message = obj.get("message")
        if isinstance(message, dict):
            return str(message.get("thinking") or "") + str(message.get("content") or "")
        return str(obj.get("thinking") or "") + str(obj.get("response") or "")


def request_text(body: JSON | None) -> str:
    if not body:
        return ""
    parts = [common.text_of(body.get(k)) for k in ("system", "messages", "prompt", "input")]
    if body.get("tools"):
        parts.append(orjson.dumps(body["tools"]).decode())
    return "\n".join(p for p in parts if p)


def error_body(status: int, code: str, message: str) -> bytes:
    return orjson.dumps({"error": message})


class OllamaKind(NativeKind):
    name: ClassVar[str] = "ollama"

    def is_openai_path(self, path: str) -> bool:
        return path.strip("/").startswith("v1/")

    def shape_native(
        self, provider: ProviderConfig, path: str, body: JSON | None, headers: Sequence[tuple[str, str]]
    ) -> Call:
        endpoint = endpoint_for_path(path)
        model = common.body_model(body)
        stream = endpoint in _STREAMING and body is not None and body.get("stream", True) is not False
        call = Call(provider, endpoint, model, model, stream, body=body, path=path)
        think = body.get("think") if body else None
        call.thinking = think is not None and think is not False
        return call

    def native_meter(self, status: int, content_type: str) -> Meter:
        return FrameMeter(NativeReader(), status, ndjson=content_type.startswith("application/x-ndjson"))

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return error_body(status, code, message)

    def input_text(self, body: JSON | None) -> str:
        return request_text(body)
