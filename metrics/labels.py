"""Bounded label values: a `LabelFolder` maps an open-ended value (a tenant, a model) to a label.

A value the policy admits keeps its name; everything else becomes `other`, a missing value becomes
`none`, and a disabled label is always the empty string (the recorder leaves such labels out).
`top_n` admits the first N distinct values it sees and never more, so the number of label values,
and with it the number of series, cannot grow with traffic. Folding is one dict lookup. The recorder
does not admit a model or endpoint from a request answered 404 or 405: the names of a client's
mistakes (a mistyped model, a path the provider does not have) must not take the slots of the names
in use.

Under `serve --workers N` the workers' counts are summed per label value, so they must fold alike:
there a `SharedAdmissions` file in the metrics directory holds the values admitted by any worker, and
a worker consults it (under a lock) only for a value it has not seen, until the N are taken.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from metrics.config import LabelPolicy

OTHER = "other"
MISSING = "none"
MAX_VALUE_LENGTH = 100  # longer values are never admitted: a label is a name, not a payload


class SharedAdmissions:
    """The values of one label admitted by any worker of a gateway, one per line, in the order admitted."""

    def __init__(self, folder: Path, label: str) -> None:
        self.path = folder / f"labels_{label}.txt"

    def admit(self, value: str, limit: int) -> tuple[list[str], bool]:
        """Every value admitted so far, after admitting `value` if fewer than `limit` are; and whether it is."""
        with self.path.open("a+", encoding="utf-8") as shared:
            fcntl.flock(shared, fcntl.LOCK_EX)
            shared.seek(0)
            admitted = shared.read().split("\n")[:-1]  # one value a line; a value may hold other line breaks
            if value in admitted:
                return admitted, True
            if len(admitted) >= limit:
                return admitted, False
            shared.write(value + "\n")
            return [*admitted, value], True


class LabelFolder:
    __slots__ = ("_admitting", "_known", "_limit", "_listed", "_shared", "enabled")

    def __init__(self, policy: LabelPolicy, shared: SharedAdmissions | None = None) -> None:
        self.enabled = policy.enabled
        self._known: dict[str, str] = {v: v for v in policy.allow}
        self._listed = len(self._known)  # named by the policy itself: the same in every worker
        self._admitting = policy.mode == "top_n"
        self._limit = policy.top_n
        self._shared = shared if self._admitting else None

    def fold(self, value: str | None, admit: bool = True) -> str:
        """The label for `value`; with `admit` false a value not named yet becomes `other` without taking a slot."""
        if not self.enabled:
            return ""
        if not value:
            return MISSING
        label = self._known.get(value)
        if label is not None:
            return label
        if admit and self._admitting and len(self._known) < self._limit and len(value) <= MAX_VALUE_LENGTH:
            if self._shared is None:
                self._known[value] = value
                return value
            if "\n" not in value:
                return self._fold_shared(self._shared, value)
        return OTHER

    def _fold_shared(self, shared: SharedAdmissions, value: str) -> str:
        """Admit `value` if the workers have not taken all N yet, and learn which ones they have taken."""
        admitted, ok = shared.admit(value, self._limit - self._listed)
        for name in admitted:
            self._known.setdefault(name, name)
        if not ok:  # all N are taken: no more are admitted anywhere, so this worker need not ask again
            self._admitting = False
        return value if ok else OTHER

    @property
    def named(self) -> tuple[str, ...]:
        """The values that keep their own name."""
        return tuple(self._known)


class BoundedLabel(LabelFolder):
    """A label whose values come from code, not clients (error types), capped all the same."""

    def __init__(self, limit: int) -> None:
        super().__init__(LabelPolicy("top_n", limit))
