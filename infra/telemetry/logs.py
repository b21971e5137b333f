"""Structured JSON log lines carrying the trace, job, tenant and event they concern.

The consumer runner sets the event's ids in context variables for the time
it handles the event, so every line a handler logs carries them without the
handler passing them around.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

from infra.settings import Settings

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "ayush_log_context", default=None
)

# Attributes of a LogRecord itself; anything else came from `extra=`.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# Never written unless bodies are enabled: they hold prompts, answers or credentials.
SENSITIVE = frozenset(
    {"prompt", "messages", "content", "text", "body", "authorization", "api_key", "password"}
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add fields (job_id, tenant_id, event_id …) to every line logged inside."""
    current = _CONTEXT.get() or {}
    added = {k: str(v) for k, v in fields.items() if v is not None}
    token = _CONTEXT.set({**current, **added})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, include_bodies: bool = False) -> None:
        super().__init__()
        self._include_bodies = include_bodies

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        line.update(_CONTEXT.get() or {})
        for key, value in record.__dict__.items():
            if key in _RESERVED or key.startswith("_"):
                continue
            if key.lower() in SENSITIVE and not self._include_bodies:
                continue
            line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(settings: Settings, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(include_bodies=settings.log_bodies))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; some vendors (Telegram, Discord
    # webhooks) carry the credential in the URL, which must never reach a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
