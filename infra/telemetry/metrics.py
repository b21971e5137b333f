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
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "ayush_http_requests", "HTTP requests by route and status.",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "ayush_http_request_seconds", "HTTP request latency (to the end of the body).",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.sse_open = Gauge(
            "ayush_sse_streams_open", "Open Server-Sent Event streams.", registry=r
        )
        self.publish_seconds = Histogram(
            "ayush_publish_seconds", "From send to broker acknowledgement, by topic.",
            ["topic", "outcome"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "ayush_consumer_lag", "End offset minus committed offset.",
            ["group", "topic", "partition"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "ayush_events_in_flight", "Events being handled now.", ["group"], registry=r
        )
        self.handler_seconds = Histogram(
            "ayush_handler_seconds", "Handling of one event, retries included, by outcome.",
            ["group", "event_type", "outcome"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "ayush_handler_retries", "Handler attempts after the first.",
            ["group", "event_type"], registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "ayush_dead_letters", "Events parked on a dead-letter topic.",
            ["group", "topic"], registry=r,
        )  # fmt: skip
        self.provider_seconds = Histogram(
            "ayush_provider_seconds", "One model call, streamed to its end.",
            ["provider", "model", "outcome"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.provider_errors = Counter(
            "ayush_provider_errors", "Failed model calls by kind (transient, permanent).",
            ["provider", "model", "kind"], registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "ayush_tokens", "Tokens of completed model calls.",
            ["provider", "model", "direction"], registry=r,
        )  # fmt: skip
        self.cost_usd = Counter(
            "ayush_cost_usd", "Cost of completed model calls at list price.",
            ["provider", "model"], registry=r,
        )  # fmt: skip
        self.cache_lookups = Counter(
            "ayush_cache_lookups", "Cache look-ups by cache and result (hit, miss).",
            ["cache", "result"], registry=r,
        )  # fmt: skip

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
