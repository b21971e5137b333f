"""ASGI middleware: a SERVER span and metrics per request; open streams closed on shutdown.

Pure ASGI (not BaseHTTPMiddleware) so streamed bodies pass through untouched
and the request's task stays the one running the endpoint, which is what
lets shutdown cancel a stream and still answer with a final event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.telemetry import propagation
from infra.telemetry.metrics import Metrics
from infra.telemetry.tracing import tracer
from producers.ingress.middleware import HttpMiddleware

SHUTDOWN_FRAME = b'event: shutdown\ndata: {"reason": "server shutting down, reconnect"}\n\n'


class OpenStreams:
    """The requests now streaming Server-Sent Events, to end them on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    def add(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)

    def discard(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)

    def close_all(self) -> None:
        self.closing = True
        for task in list(self._tasks):
            task.cancel()


class TelemetryMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, metrics: Metrics | None, streams: OpenStreams) -> None:
        super().__init__(app)
        self.metrics = metrics
        self.streams = streams

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        parent = propagation.extract((k.decode("latin-1"), v) for k, v in scope["headers"])
        started = time.perf_counter()
        exchange: dict[str, Any] = {"status": 500, "sse": False, "ended": False}
        task = asyncio.current_task()

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange["status"] = message["status"]
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                if content_type.startswith(b"text/event-stream") and task is not None:
                    exchange["sse"] = True
                    self.streams.add(task)
                    if self.metrics is not None:
                        self.metrics.sse_open.inc()
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                exchange["ended"] = True
                if exchange["sse"] and self.streams.closing:
                    # The stream ended on its own as shutdown cancelled its read.
                    message = {**message, "body": message.get("body", b"") + SHUTDOWN_FRAME}
            await send(message)

        with tracer().start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, record_exception=False
        ) as span:
            try:
                await self.app(scope, receive, observed_send)
            except BaseException:
                # Shutdown cancelled this stream (clients may surface the cancel
                # as their own timeout): end it with a last event, not a cut.
                if not (exchange["sse"] and self.streams.closing) or exchange["ended"]:
                    raise
                if task is not None and task.cancelling():
                    task.uncancel()
                await send({"type": "http.response.body", "body": SHUTDOWN_FRAME})
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                status = exchange["status"]
                span.update_name(f"{method} {template}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                if exchange["sse"] and task is not None:
                    self.streams.discard(task)
                    if self.metrics is not None:
                        self.metrics.sse_open.dec()
                if self.metrics is not None:
                    self.metrics.http_requests.labels(method, template, str(status)).inc()
                    self.metrics.http_seconds.labels(method, template).observe(
                        time.perf_counter() - started
                    )
