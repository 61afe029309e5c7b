"""The shared base of the kinds with an API of their own that also serve OpenAI's.

Anthropic, Gemini, DashScope and Ollama each answer OpenAI-shaped requests on some paths of their
own base URL. Those requests are shaped, sent and metered exactly as OpenAI's (`OpenAIKind`), from
the `/v1/...` routes and from the raw pass-through alike; everything else is the native API, which
the subclass reads: which raw paths are OpenAI's (`is_openai_path`), what a native request asks for
(`shape_native`), and which meter reads a native answer (`native_meter`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from gateway.providers import openai
from gateway.providers.base import JSON, Call, Meter, ProviderConfig


class NativeKind(openai.OpenAIKind, ABC):
    openai_prefix: ClassVar[str] = "v1/"  # where most of them serve OpenAI's API

    @abstractmethod
    def is_openai_path(self, path: str) -> bool:
        """Whether a raw pass-through path is on the provider's OpenAI-compatible API."""

    @abstractmethod
    def shape_native(
        self, provider: ProviderConfig, path: str, body: JSON | None, headers: Sequence[tuple[str, str]]
    ) -> Call:
        """A raw request to the native API: its endpoint, model, stream and thinking flags."""

    @abstractmethod
    def native_meter(self, status: int, content_type: str) -> Meter:
        """The meter of a native answer."""

    def shape_raw(
        self,
        provider: ProviderConfig,
        method: str,
        path: str,
        body: JSON | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Call:
        if self.is_openai_path(path):
            return openai.shape_call(provider, path, body)
        return self.shape_native(provider, path, body, headers)

    def new_meter(self, call: Call, status: int, content_type: str) -> Meter:
        if openai.is_openai_call(call):
            return openai.new_meter(call, status, content_type)
        return self.native_meter(status, content_type)
