"""The errors reconciliation raises; every message is meant for the operator as is."""

from __future__ import annotations


class ReconcileError(Exception):
    """Reconciliation cannot go on; the message says why and, where it can, what to do."""


class AdminKeyError(ReconcileError):
    """The admin key is missing, or the provider refused it (401) or its permissions (403)."""


class MissingAdminKey(AdminKeyError):
    """The environment variable that should hold the admin key is not set."""


class ProviderAPIError(ReconcileError):
    """The provider's reporting API answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SnapshotError(ReconcileError):
    """No stored snapshot fits, or one cannot be read."""
