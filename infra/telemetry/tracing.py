"""The tracer provider of one process: OTLP and/or a JSON-lines file, else nothing.

With no exporter configured no provider is installed, so OpenTelemetry's API
hands out non-recording spans: tracing costs a few attribute look-ups.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import IO

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from infra.settings import Settings

TRACER_NAME = "ayush"


@functools.cache
def tracer() -> trace.Tracer:
    """The process's tracer; made once, as the SDK builds a new one on every request.

    Before `setup_tracing` this is a proxy that starts using the real provider
    as soon as one is installed.
    """
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
    handle: IO[bytes] | None = None
    if settings.trace_file is not None:
        handle = settings.trace_file.open("ab")
        exporters.append(JsonLinesExporter(handle))
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


class JsonLinesExporter(SpanExporter):
    """One compact JSON line per span, for local debugging and tests.

    The SDK's console exporter renders the whole resource with every span,
    which costs several times more than the span itself.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            if context is None:
                continue
            line = {
                "name": span.name,
                "context": {
                    "trace_id": f"0x{context.trace_id:032x}",
                    "span_id": f"0x{context.span_id:016x}",
                },
                "parent_id": f"0x{span.parent.span_id:016x}" if span.parent else None,
                "kind": str(span.kind),
                "start_time": span.start_time,
                "end_time": span.end_time,
                "status": span.status.status_code.name,
                "attributes": dict(span.attributes or {}),
            }
            lines.append(orjson.dumps(line) + b"\n")
        self._out.write(b"".join(lines))
        self._out.flush()
        return SpanExportResult.SUCCESS


def _nothing() -> None:
    return None
