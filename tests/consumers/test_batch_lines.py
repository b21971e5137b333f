"""Reading a batch input file: the request count is checked before any line is parsed."""

from __future__ import annotations

import json

from consumers.groups.batch.lines import parse_input
from infra.pricing import PriceTable
from infra.routing.catalog import ModelCatalog
from infra.routing.config import RoutingConfig

MODELS = ModelCatalog(RoutingConfig(), PriceTable.load())  # the shipped models
ENDPOINT = "/v1/chat/completions"


def line(custom_id: str) -> bytes:
    body = {"model": "local-echo", "messages": [{"role": "user", "content": custom_id}]}
    item = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(item).encode()


def parse(data: bytes, max_requests: int) -> tuple[list[str], list[tuple[str, int | None, str]]]:
    requests, errors = parse_input(
        data, endpoint=ENDPOINT, max_requests=max_requests, max_bytes=10_000_000, models=MODELS
    )
    return [r.custom_id for r in requests], [(e.code, e.line, e.message) for e in errors]


def test_a_file_over_the_request_limit_is_refused_before_any_line_is_parsed() -> None:
    # Unparseable lines past the limit: were they parsed, their errors would be reported.
    data = b"\n".join([line("a"), line("b"), line("c"), *[b"{not json"] * 500])
    requests, errors = parse(data, max_requests=3)
    assert requests == []
    [(code, line_no, message)] = errors
    assert code == "too_many_requests" and line_no is None
    assert "more than 3 requests" in message and "limit is 3" in message


def test_blank_lines_do_not_count_against_the_limit() -> None:
    data = b"\n\n".join([line("a"), line("b"), line("c")]) + b"\n\n\n"
    assert parse(data, max_requests=3) == (["a", "b", "c"], [])
    requests, [(code, _, _)] = parse(data + line("d"), max_requests=3)
    assert requests == [] and code == "too_many_requests"


def user_line(custom_id: str, **body_fields: object) -> bytes:
    body = {
        "model": "local-echo",
        "messages": [{"role": "user", "content": custom_id}],
        **body_fields,
    }
    item = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(item).encode()


def test_a_users_batch_runs_every_line_as_that_user() -> None:
    data = b"\n".join([user_line("a"), user_line("b", user="alice")])
    requests, errors = parse_input(
        data, endpoint=ENDPOINT, max_requests=10, max_bytes=10_000_000, models=MODELS,
        user_id="alice",
    )  # fmt: skip
    assert errors == []
    assert [r.job.user_id for r in requests] == ["alice", "alice"]


def test_a_users_batch_line_naming_another_user_is_refused() -> None:
    data = b"\n".join(
        [
            user_line("a", user="bob"),
            user_line("b", memory={"user_id": "bob", "top_k": 3}),
            user_line("c"),
        ]
    )
    requests, errors = parse_input(
        data, endpoint=ENDPOINT, max_requests=10, max_bytes=10_000_000, models=MODELS,
        user_id="alice",
    )  # fmt: skip
    assert [(e.code, e.line, e.param) for e in errors] == [
        ("forbidden", 1, "body.user_id"),
        ("forbidden", 2, "body.memory.user_id"),
    ]
    assert requests == []  # any refused line refuses the file, as for other line errors
