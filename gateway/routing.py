"""Model routing for the OpenAI-compatible routes: which provider serves a `model`, and as what.

Resolution order (SPEC.md): exact names in `models`, then globs in list order, then a
`provider/model` prefix naming a configured provider (the prefix is stripped upstream).
Results are cached, so a hot model costs one dict lookup.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from gateway.config import ModelRoute
from gateway.providers.base import ProviderConfig

_CACHE_MAX = 4096


class ModelRouter:
    def __init__(self, routes: list[ModelRoute], providers: dict[str, ProviderConfig]) -> None:
        self._providers = providers
        self._exact: dict[str, ModelRoute] = {}
        self._globs: list[ModelRoute] = []
        for route in routes:
            if any(ch in route.name for ch in "*?["):
                self._globs.append(route)
            else:
                self._exact.setdefault(route.name, route)
        self._cache: dict[str, tuple[ProviderConfig, str] | None] = {}
        self.routes = routes

    def resolve(self, model: str) -> tuple[ProviderConfig, str] | None:
        """(provider, model to send upstream), or None when nothing serves `model`."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._resolve(model)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[model] = found
        return found

    def _resolve(self, model: str) -> tuple[ProviderConfig, str] | None:
        route = self._exact.get(model)
        if route is None:
            route = next((r for r in self._globs if fnmatchcase(model, r.name)), None)
        if route is not None:
            return self._providers[route.provider], route.model or model
        prefix, sep, rest = model.partition("/")
        if sep and rest and prefix in self._providers:
            return self._providers[prefix], rest
        return None
