"""Every refusal of a submission is one error family, answered by each route in its own
wire format: Ayush's JSON body, or OpenAI's for the OpenAI-compatible routes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from infra.errors import EventTooLarge, ModelNotPriced, TransientError, UnknownModel
from producers.ingress import errors, openai_errors
from producers.ingress.errors import (
    BudgetExceeded,
    IdempotencyConflict,
    ModelRefused,
    RateLimited,
    SubmissionError,
    TooLarge,
    unavailable,
)

BUDGET = {"scope": "tenant", "period": "2026-12"}
# refusal -> (status, Ayush's body, OpenAI's error, a header both keep)
CASES: list[tuple[SubmissionError, int, dict[str, Any], dict[str, Any], tuple[str, str] | None]] = [
    (
        unavailable("the event log", TransientError("broker away")),
        503,
        {"error": "unavailable", "message": "the event log unavailable, try again"},
        {"type": "service_unavailable", "code": "unavailable"},
        ("retry-after", "1"),
    ),
    (
        TooLarge(EventTooLarge("event of 2000000 bytes is over the log's limit")),
        413,
        {"error": "too_large"},
        {"type": "invalid_request_error", "code": "request_too_large"},
        None,
    ),
    (
        BudgetExceeded("the tenant's monthly budget is spent", BUDGET),
        402,
        {"error": "budget_exceeded", "budget": BUDGET},
        {"type": "insufficient_quota", "code": "budget_exceeded", "budget": BUDGET},
        None,
    ),
    (
        RateLimited(429, "rate_limited", "requests per minute limit", {"Retry-After": "7"}),
        429,
        {"error": "rate_limited"},
        {"type": "rate_limit_error", "code": "rate_limited"},
        ("retry-after", "7"),
    ),
    (
        IdempotencyConflict(),
        409,
        {"error": "idempotency_conflict"},
        {"type": "invalid_request_error", "code": "idempotency_conflict"},
        None,
    ),
]


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)
    openai_errors.install(app)

    @app.get("/ayush/{case}")
    async def ayush(case: int) -> None:
        raise CASES[case][0]

    @app.get("/openai/{case}")
    async def openai(case: int) -> None:
        try:
            raise CASES[case][0]
        except SubmissionError as exc:
            raise openai_errors.from_api_error(exc) from exc

    return app


@pytest.mark.parametrize("case", range(len(CASES)), ids=[type(c[0]).__name__ for c in CASES])
async def test_a_refused_submission_reads_the_same_in_each_wire_format(case: int) -> None:
    _, status, ayush_body, openai_error, header = CASES[case]
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        ayush = await client.get(f"/ayush/{case}")
        openai = await client.get(f"/openai/{case}")
    assert ayush.status_code == openai.status_code == status
    assert ayush.json().items() >= ayush_body.items(), ayush.json()
    assert openai.json()["error"].items() >= openai_error.items(), openai.json()
    assert openai.json()["error"]["message"] == ayush.json()["message"]
    if header is not None:
        assert ayush.headers[header[0]] == openai.headers[header[0]] == header[1]


@pytest.mark.parametrize("cause", [UnknownModel("gpt-nope"), ModelNotPriced("gpt-free")])
def test_a_refused_model_names_the_model_param_in_openais_shape(cause: Exception) -> None:
    refused = ModelRefused(cause)  # type: ignore[arg-type]
    error = openai_errors.from_api_error(refused)
    assert error.param == "model" and error.message == str(cause)
    assert (error.status, error.code) == (
        (400, "model_not_priced") if isinstance(cause, ModelNotPriced) else (404, "model_not_found")
    )
