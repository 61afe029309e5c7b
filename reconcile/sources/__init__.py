"""Provider reporting sources, one module per provider, looked up by name in `SOURCES`."""

from __future__ import annotations

from reconcile.sources import anthropic, openai
from reconcile.sources.base import SourceFactory, UsageSource

SOURCES: dict[str, SourceFactory] = {
    "openai": openai.build,
    "anthropic": anthropic.build,
}

__all__ = ["SOURCES", "SourceFactory", "UsageSource"]
