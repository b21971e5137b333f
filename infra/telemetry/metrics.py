"""The Prometheus series of one process, in its own registry.

One `Metrics` per process, built in the entry point and passed to the
publisher, the consumer runner, the provider wrapper and the ingress
middleware. A registry of its own (not prometheus_client's global one) lets
tests and benchmarks build several side by side.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

# Seconds: from a cache hit to a long model call.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Each series: its name, its help text, its labels (space-separated).
        self.http_requests = self._counter(
            "ayush_http_requests", "HTTP requests by route and status.", "method route status"
        )
        self.http_seconds = self._histogram(
            "ayush_http_request_seconds",
            "HTTP request latency (to the end of the body).",
            "method route",
        )
        self.sse_open = self._gauge("ayush_sse_streams_open", "Open Server-Sent Event streams.")
        self.ws_open = self._gauge("ayush_ws_connections_open", "Open WebSocket connections.")
        self.ws_queue_peak = self._gauge(
            "ayush_ws_send_queue_peak",
            "The most messages any WebSocket connection has had waiting to be sent.",
        )
        self.ws_closed = self._counter(
            "ayush_ws_closed", "WebSocket connections closed by the server, by reason.", "reason"
        )
        self.publish_seconds = self._histogram(
            "ayush_publish_seconds",
            "From send to broker acknowledgement, by topic.",
            "topic outcome",
        )
        self.consumer_lag = self._gauge(
            "ayush_consumer_lag", "End offset minus committed offset.", "group topic partition"
        )
        self.in_flight = self._gauge("ayush_events_in_flight", "Events being handled now.", "group")
        self.handler_seconds = self._histogram(
            "ayush_handler_seconds",
            "Handling of one event, retries included, by outcome.",
            "group event_type outcome",
        )
        self.retries = self._counter(
            "ayush_handler_retries", "Handler attempts after the first.", "group event_type"
        )
        self.dead_letters = self._counter(
            "ayush_dead_letters", "Events parked on a dead-letter topic.", "group topic"
        )
        self.provider_seconds = self._histogram(
            "ayush_provider_seconds",
            "One model call, streamed to its end.",
            "provider model outcome",
        )
        self.provider_errors = self._counter(
            "ayush_provider_errors",
            "Failed model calls by kind (transient, permanent).",
            "provider model kind",
        )
        self.connector_actions = self._counter(
            "ayush_connector_actions",
            "Connector actions finished, by connector, action and outcome (ok, error).",
            "connector action outcome",
        )
        self.tokens = self._counter(
            "ayush_tokens", "Tokens of completed model calls.", "provider model direction"
        )
        self.cost_usd = self._counter(
            "ayush_cost_usd", "Cost of completed model calls at list price.", "provider model"
        )
        self.cache_lookups = self._counter(
            "ayush_cache_lookups", "Cache look-ups by cache and result (hit, miss).", "cache result"
        )
        self.route_choices = self._counter(
            "ayush_route_choices",
            "Models chosen by named routes (model: auto …), by route, model and deciding rule.",
            "route model rule",
        )

    def _counter(self, name: str, doc: str, labels: str = "") -> Counter:
        return Counter(name, doc, labels.split(), registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: str = "") -> Gauge:
        return Gauge(name, doc, labels.split(), registry=self.registry)

    def _histogram(self, name: str, doc: str, labels: str = "") -> Histogram:
        return Histogram(name, doc, labels.split(), buckets=LATENCY_BUCKETS, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsServer:
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """prometheus_client's HTTP server thread, stoppable."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
