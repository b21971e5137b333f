"""JSON log lines: ids from the handling context and the current span, bodies left out."""

from __future__ import annotations

import json
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from infra.telemetry import propagation
from infra.telemetry.logs import JsonFormatter, log_context


def record(**extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "ayush.test", "levelname": "INFO", "msg": "hello %s"})
    rec.args = ("world",)
    rec.__dict__.update(extra)
    return rec


def test_a_line_carries_context_ids_and_the_trace_but_no_bodies() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span, log_context(job_id="j-1", tenant_id="t-1"):
        line = json.loads(JsonFormatter().format(record(prompt="secret words", attempt=2)))
    assert line["msg"] == "hello world" and line["level"] == "INFO"
    assert line["job_id"] == "j-1" and line["tenant_id"] == "t-1"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["attempt"] == 2
    assert "prompt" not in line

    enabled = json.loads(JsonFormatter(include_bodies=True).format(record(prompt="shown")))
    assert enabled["prompt"] == "shown"
    assert "job_id" not in enabled and "trace_id" not in enabled


def test_trace_context_round_trips_through_kafka_headers() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("publish") as span:
        headers = propagation.inject([("ayush-type", b"x"), ("traceparent", b"stale")])
    assert [k for k, _ in headers].count("traceparent") == 1
    assert ("ayush-type", b"x") in headers
    extracted = trace.get_current_span(propagation.extract(headers)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id
    assert extracted.span_id == span.get_span_context().span_id
