"""Provider kinds by name: the one place a new wire format is registered."""

from __future__ import annotations

from gateway.providers.anthropic import AnthropicKind
from gateway.providers.azure import AzureKind
from gateway.providers.base import ProviderKind
from gateway.providers.dashscope import DashScopeKind
from gateway.providers.demo import DemoKind
from gateway.providers.gemini import GeminiKind
from gateway.providers.hunyuan import HunyuanKind
from gateway.providers.ollama import OllamaKind
from gateway.providers.openai import OpenAIKind

KINDS: dict[str, ProviderKind] = {
    "openai": OpenAIKind(),
    "azure": AzureKind(),
    "anthropic": AnthropicKind(),
    "gemini": GeminiKind(),
    "dashscope": DashScopeKind(),
    "hunyuan": HunyuanKind(),
    "ollama": OllamaKind(),
    "demo": DemoKind(),
}


def kind_for(name: str) -> ProviderKind:
    return KINDS[name]
