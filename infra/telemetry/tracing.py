"""The tracer provider of one process: OTLP and/or a JSON-lines file, else nothing.

With no exporter configured no provider is installed, so OpenTelemetry's API
hands out non-recording spans: tracing costs a few attribute look-ups.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from infra.settings import Settings

TRACER_NAME = "ayush"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def setup_tracing(settings: Settings, service: str) -> Callable[[], None]:
    """Install this process's tracer provider; returns the function that flushes it."""
    if not settings.telemetry_enabled:
        return _nothing
    exporters: list[SpanExporter] = []
    if settings.otel_exporter_otlp_endpoint:
        # Imported here: the exporter pulls in protobuf, which a process
        # without OTLP export need not load.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Reads OTEL_EXPORTER_OTLP_ENDPOINT (and headers) itself, adding /v1/traces.
        exporters.append(OTLPSpanExporter())
    handle: IO[str] | None = None
    if settings.trace_file is not None:
        handle = settings.trace_file.open("a", buffering=1)
        exporters.append(ConsoleSpanExporter(out=handle, formatter=_one_line))
    if not exporters:
        return _nothing
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"ayush-{service}")}
    )
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    def shutdown() -> None:
        provider.shutdown()
        if handle is not None:
            handle.close()

    return shutdown


def _one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def _nothing() -> None:
    return None
