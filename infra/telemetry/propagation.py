"""W3C trace context in Kafka record headers (`traceparent`, `tracestate`)."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_FIELDS = frozenset(_PROPAGATOR.fields)

Headers = list[tuple[str, bytes]]


def inject(headers: Iterable[tuple[str, bytes]], context: Context | None = None) -> Headers:
    """The headers with the trace context of `context` (default: the current one).

    Any trace context already present (a dead-lettered record's) is replaced.
    """
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    kept = [(k, v) for k, v in headers if k not in _FIELDS]
    return kept + [(k, v.encode()) for k, v in carrier.items()]


def extract(headers: Iterable[tuple[str, bytes]] | None) -> Context:
    carrier = {k: v.decode("latin-1") for k, v in headers or () if k in _FIELDS}
    return _PROPAGATOR.extract(carrier)
