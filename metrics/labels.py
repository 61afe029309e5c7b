"""Bounded label values: a `LabelFolder` maps an open-ended value (a tenant, a model) to a label.

A value the policy admits keeps its name; everything else becomes `other`, a missing value becomes
`none`, and a disabled label is always the empty string (the recorder leaves such labels out).
`top_n` admits the first N distinct values it sees and never more, so the number of label values,
and with it the number of series, cannot grow with traffic. Folding is one dict lookup.
"""

from __future__ import annotations

from metrics.config import LabelPolicy

OTHER = "other"
MISSING = "none"
MAX_VALUE_LENGTH = 100  # longer values are never admitted: a label is a name, not a payload


class LabelFolder:
    __slots__ = ("_admitting", "_known", "_limit", "enabled")

    def __init__(self, policy: LabelPolicy) -> None:
        self.enabled = policy.enabled
        self._known: dict[str, str] = {v: v for v in policy.allow}
        self._admitting = policy.mode == "top_n"
        self._limit = policy.top_n

    def fold(self, value: str | None) -> str:
        if not self.enabled:
            return ""
        if not value:
            return MISSING
        label = self._known.get(value)
        if label is not None:
            return label
        if self._admitting and len(self._known) < self._limit and len(value) <= MAX_VALUE_LENGTH:
            self._known[value] = value
            return value
        return OTHER

    @property
    def named(self) -> tuple[str, ...]:
        """The values that keep their own name."""
        return tuple(self._known)


class BoundedLabel(LabelFolder):
    """A label whose values come from code, not clients (error types), capped all the same."""

    def __init__(self, limit: int) -> None:
        super().__init__(LabelPolicy("top_n", limit))
