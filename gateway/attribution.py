"""Who a request is for: tenant, user, feature, session and tags, read from request headers.

The header names come from config (`attribution`); these headers are consumed here and never
forwarded upstream. `user_id` falls back to the body's `user` (OpenAI) or `metadata.user_id`
(Anthropic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config import AttributionConfig

_MAX_LEN = 256  # characters of an attribution value, a tag's key or a tag's value
MAX_TAGS = 32  # tags kept per request: labels to group by, not a payload


@dataclass(slots=True)
class Attribution:
    tenant_id: str | None = None
    user_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class AttributionReader:
    def __init__(self, config: AttributionConfig) -> None:
        self._fields = {
            config.tenant.encode("latin-1"): "tenant_id",
            config.user.encode("latin-1"): "user_id",
            config.feature.encode("latin-1"): "feature",
            config.session.encode("latin-1"): "session_id",
        }
        self._tags = config.tags.encode("latin-1")
        self.header_names = frozenset([*self._fields, self._tags])

    def read(self, headers: list[tuple[bytes, bytes]], body: dict[str, Any] | None) -> Attribution:
        out = Attribution()
        for name, value in headers:
            attr = self._fields.get(name)
            if attr is not None:
                text = value.decode("utf-8", "replace").strip()[:_MAX_LEN]
                if text:
                    setattr(out, attr, text)
            elif name == self._tags:
                parse_tags(value.decode("utf-8", "replace"), out.tags)
        if out.user_id is None and body:
            out.user_id = body_user(body)
        return out


def parse_tags(text: str, tags: dict[str, str] | None = None) -> dict[str, str]:
    """`team=search,env=prod` -> {"team": "search", "env": "prod"}; a bare word maps to "". Added to `tags`
    when given; new keys beyond MAX_TAGS are left out."""
    tags = {} if tags is None else tags
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()[:_MAX_LEN]
        if key and (key in tags or len(tags) < MAX_TAGS):
            tags[key] = value.strip()[:_MAX_LEN]
    return tags


def body_user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    if isinstance(user, str) and user:
        return user[:_MAX_LEN]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        uid = meta.get("user_id")
        if isinstance(uid, str) and uid:
            return uid[:_MAX_LEN]
    return None
