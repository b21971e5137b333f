"""The one error hierarchy adapters translate vendor exceptions into."""

from __future__ import annotations


class AyushError(Exception):
    """Base of every error an adapter raises."""


class TransientError(AyushError):
    """Timeouts, 429, 5xx, dropped connections: worth retrying after a pause."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(AyushError):
    """Bad request, unknown model, refused credentials: retrying cannot help."""
