"""Mapping HTTP status codes of vendor answers to our two error kinds."""

from __future__ import annotations

from collections.abc import Mapping

from infra.errors import PermanentError, TransientError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None  # an HTTP date: rare from model vendors; fall back to backoff
    return None


def from_status(
    vendor: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> TransientError | PermanentError:
    text = f"{vendor} answered {status}: {message}"
    if status in RETRYABLE_STATUS:
        return TransientError(text, retry_after=retry_after_seconds(headers), status=status)
    return PermanentError(text, status=status)
