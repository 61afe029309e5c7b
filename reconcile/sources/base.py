"""The seam between reconciliation and a provider's reporting API.

A source owns its provider's URLs, authentication headers, query parameters and response shapes,
and hands back one `ProviderData`: usage rows (grouped by model, project or workspace, and API
key, as finely as the provider allows) and cost rows, normalized as `reconcile.model` describes.
Adding a provider means one module with a `build(settings, env, options, ...)` function and one
line in `reconcile.sources.SOURCES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from reconcile.http import Sleep
from reconcile.model import ProviderData
from reconcile.settings import ClientOptions, ProviderSettings


class UsageSource(Protocol):
    name: str

    async def fetch(self, since: datetime, until: datetime, bucket_width: str) -> ProviderData: ...

    async def aclose(self) -> None: ...


class SourceFactory(Protocol):
    def __call__(
        self,
        settings: ProviderSettings,
        env: Mapping[str, str],
        options: ClientOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> UsageSource: ...


def count(result: Mapping[str, Any], key: str) -> int:
    """A token or request count from a result; absent or null counts as 0."""
    value = result.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def text(result: Mapping[str, Any], key: str) -> str | None:
    value = result.get(key)
    return str(value) if value not in (None, "") else None


def bucket_results(bucket: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    results = bucket.get("results", bucket.get("result")) or []
    return [r for r in results if isinstance(r, Mapping)]


def now() -> datetime:
    return datetime.now(UTC)
