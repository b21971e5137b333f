"""Hooks the Kafka publisher and consumer runner call: spans, metrics, log context.

Publishing starts a PRODUCER span per record and puts its context in the
record's headers; consuming continues that trace in a CONSUMER span around
the handler, so one trace runs from the HTTP request through every hop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from infra.telemetry import propagation
from infra.telemetry.logs import log_context
from infra.telemetry.metrics import Metrics
from infra.telemetry.tracing import tracer
from schemas.envelope import Envelope, RawEnvelope

Headers = list[tuple[str, bytes]]

log = logging.getLogger("ayush.events")


class PublishObserver:
    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics

    def start(self, topic: str, headers: Headers) -> tuple[Headers, Any]:
        """Begin one record's publish: its headers (with trace context) and a token."""
        span = tracer().start_span(
            f"publish {topic}",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        )
        headers = propagation.inject(headers, trace.set_span_in_context(span))
        return headers, (topic, span, time.perf_counter())

    def sent(self, token: Any, future: asyncio.Future[Any]) -> None:
        future.add_done_callback(lambda f: self._finish(token, f))

    def failed(self, token: Any, exc: BaseException) -> None:
        self._end(token, exc)

    def _finish(self, token: Any, future: asyncio.Future[Any]) -> None:
        exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
        self._end(token, exc)

    def _end(self, token: Any, exc: BaseException | None) -> None:
        topic, span, started = token
        if exc is not None:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.end()
        if self._metrics is not None:
            self._metrics.publish_seconds.labels(topic, "error" if exc else "ok").observe(
                time.perf_counter() - started
            )


class HandlingObservation:
    """What the runner reports about one event while it handles it."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.outcome = "error"
        self.retries = 0


class ConsumeObserver:
    def __init__(self, metrics: Metrics | None, group: str, log_events: bool = False) -> None:
        self._metrics = metrics
        self._group = group
        self._log_events = log_events

    @contextmanager
    def handling(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], event_type: str, first: Any
    ) -> Iterator[HandlingObservation]:
        """Around one handler call (one event, or a list of one type): the continued trace
        (of the first record), log fields, latency, outcome."""
        record = records[0]
        parent = propagation.extract(record.headers)
        token = otel_context.attach(parent)
        started = time.perf_counter()
        observation = HandlingObservation(trace.INVALID_SPAN)
        metrics = self._metrics
        if metrics is not None:
            metrics.in_flight.labels(self._group).inc(len(records))
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.consumer.group.name": self._group,
            "messaging.kafka.destination.partition": record.partition,
            "messaging.kafka.offset": record.offset,
            "ayush.event_type": event_type,
        }
        fields: dict[str, Any] = {"event_type": event_type}
        if len(records) > 1:
            attributes["messaging.batch.message_count"] = len(records)
        elif isinstance(first, Envelope | RawEnvelope):
            attributes["messaging.message.id"] = str(first.id)
            attributes["ayush.job_id"] = str(first.correlation_id)
            attributes["ayush.tenant_id"] = str(first.tenant_id)
            fields.update(event_id=first.id, job_id=first.correlation_id, tenant_id=first.tenant_id)
        try:
            with (
                tracer().start_as_current_span(
                    f"process {record.topic}", kind=SpanKind.CONSUMER, attributes=attributes
                ) as span,
                log_context(**fields),
            ):
                observation.span = span
                try:
                    yield observation
                finally:
                    span.set_attribute("ayush.outcome", observation.outcome)
                    if observation.retries:
                        span.set_attribute("ayush.retries", observation.retries)
                    if self._log_events or observation.outcome != "ok":
                        log.info(
                            "handled %s: %s",
                            event_type,
                            observation.outcome,
                            extra={
                                "retries": observation.retries,
                                "events": len(records),
                                "seconds": round(time.perf_counter() - started, 4),
                            },
                        )
        finally:
            otel_context.detach(token)
            if metrics is not None:
                metrics.in_flight.labels(self._group).dec(len(records))
                metrics.handler_seconds.labels(
                    self._group, event_type, observation.outcome
                ).observe(time.perf_counter() - started)
                if observation.retries:
                    metrics.retries.labels(self._group, event_type).inc(observation.retries)

    def declare(self, event_types: Iterable[str]) -> None:
        """Show the group's series from the start (at zero), not after its first event."""
        if self._metrics is None:
            return
        self._metrics.in_flight.labels(self._group)
        for event_type in event_types:
            self._metrics.handler_seconds.labels(self._group, event_type, "ok")
            self._metrics.retries.labels(self._group, event_type)

    def dead_lettered(self, topic: str) -> None:
        if self._metrics is not None:
            self._metrics.dead_letters.labels(self._group, topic).inc()

    def lag(self, ends: Mapping[TopicPartition, int | None], committed: Mapping[Any, int]) -> None:
        """Record end offset minus committed offset for each assigned partition."""
        if self._metrics is None:
            return
        for tp, end in ends.items():
            if end is None or tp not in committed:
                continue
            self._metrics.consumer_lag.labels(self._group, tp.topic, str(tp.partition)).set(
                max(0, end - committed[tp])
            )
