"""Who a request is and what a budget or rate limit applies to.

`RequestScope` is the attribution of one request (tenant, gateway key id, feature, provider, model),
filled in once the key and route are known. `Selector` is the filter of a budget or rate limit: each
field it names must match (tenant, key, feature and provider exactly, model exactly or as a glob
like `gpt-4o*`, against the name sent upstream or the one the client asked for); a selector naming
nothing matches everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

FIELDS = ("tenant", "key", "feature", "provider", "model")


@dataclass(frozen=True, slots=True)
class RequestScope:
    """The attribution of one request; `key` is the gateway key's id, never the key itself."""

    tenant: str | None = None
    key: str | None = None
    feature: str | None = None
    provider: str | None = None
    model: str | None = None  # the name sent upstream (or, from a stored event, the one reported)
    model_requested: str | None = None  # the name the client asked for (a route's alias)

    def value(self, field: str) -> str | None:
        """The value of one of `FIELDS`."""
        value: str | None = getattr(self, field)
        return value


@dataclass(frozen=True, slots=True)
class Selector:
    """A filter over `RequestScope`: every field that is set must match."""

    tenant: str | None = None
    key: str | None = None
    feature: str | None = None
    provider: str | None = None
    model: str | None = None

    def matches(self, scope: RequestScope) -> bool:
        for field in ("tenant", "key", "feature", "provider"):
            wanted = getattr(self, field)
            if wanted is not None and scope.value(field) != wanted:
                return False
        if self.model is not None:
            names = (scope.model, scope.model_requested)
            return any(name is not None and fnmatchcase(name, self.model) for name in names)
        return True

    def describe(self) -> str:
        """`tenant acme, model gpt-4o*`, or `everything`."""
        parts = [f"{field} {value}" for field in FIELDS if (value := getattr(self, field)) is not None]
        return ", ".join(parts) or "everything"
