"""Batch input lines: a NUL character anywhere a line's text is stored refuses the line."""

from __future__ import annotations

import orjson

from consumers.groups.batch.lines import parse_input
from infra.pricing import PriceTable
from infra.routing.catalog import ModelCatalog
from infra.routing.config import RoutingConfig

MODELS = ModelCatalog(RoutingConfig(), PriceTable.load())  # the shipped models
URL = "/v1/chat/completions"


def line(custom_id: str, content: str) -> bytes:
    body = {"model": "local-echo", "messages": [{"role": "user", "content": content}]}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": URL, "body": body})


def test_nul_in_a_line_is_refused_naming_the_field() -> None:
    data = b"\n".join([line("ok", "hello"), line("a\x00", "hello"), line("b", "hi\x00")])
    requests, errors = parse_input(
        data, endpoint=URL, max_requests=10, max_bytes=10_000, models=MODELS
    )
    assert requests == []
    assert [(e.line, e.param) for e in errors] == [(2, "custom_id"), (3, "body.messages.0.content")]
    assert all("\x00" not in e.message for e in errors)  # the errors are stored as jsonb


def test_lines_without_nul_are_read() -> None:
    requests, errors = parse_input(
        line("a", "hello") + b"\n" + line("b", "hi"),
        endpoint=URL,
        max_requests=10,
        max_bytes=10_000,
        models=MODELS,
    )
    assert errors == [] and [r.custom_id for r in requests] == ["a", "b"]
