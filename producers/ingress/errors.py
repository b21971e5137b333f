"""Every error answers with a JSON body; a bad field is named."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.errors import EventTooLarge, ModelNotPriced, PermanentError

log = logging.getLogger(__name__)
RETRY_SOON = {"Retry-After": "1"}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers
        self.field = field
        self.extra: dict[str, Any] = {}  # more members of the body, e.g. the budget refused


class SubmissionError(ApiError):
    """Why billable work (a job, a completion, a memory write) was not accepted.

    One family whatever the route: the handler below answers it in Ayush's JSON body,
    the OpenAI-compatible routes in OpenAI's (`openai_errors.from_api_error`).
    """


class ModelRefused(SubmissionError):
    """A model no route serves (404 `model_not_found`) or that has no price (400
    `model_not_priced`): `cause` is the UnknownModel or ModelNotPriced."""

    def __init__(self, cause: PermanentError) -> None:
        priced = isinstance(cause, ModelNotPriced)
        code = "model_not_priced" if priced else "model_not_found"
        super().__init__(400 if priced else 404, code, str(cause), field="model")
        self.cause = cause


class RateLimited(SubmissionError):
    """429: a requests or tokens per minute window is full; Retry-After says when it is not."""


class BudgetExceeded(SubmissionError):
    """402: a monthly budget is spent; `extra["budget"]` names it and when it resets."""

    def __init__(self, message: str, budget: dict[str, Any]) -> None:
        super().__init__(402, "budget_exceeded", message)
        self.extra = {"budget": budget}


class Unavailable(SubmissionError):
    """503: a service the submission needs (budgets, rate limits, the event log) is away."""


class TooLarge(SubmissionError):
    """413: the job's event is over the log's record size limit."""

    def __init__(self, cause: EventTooLarge) -> None:
        super().__init__(413, "too_large", str(cause))


class IdempotencyConflict(SubmissionError):
    """409: an Idempotency-Key used before with a different request body."""

    def __init__(self) -> None:
        message = "this Idempotency-Key was used with a different request body"
        super().__init__(409, "idempotency_conflict", message)


def unavailable(what: str, exc: BaseException) -> Unavailable:
    """A 503 saying what is unavailable; why (hosts, addresses, driver text) goes to the log."""
    log.warning("%s unavailable: %s: %s", what, type(exc).__name__, exc)
    return Unavailable(503, "unavailable", f"{what} unavailable, try again", RETRY_SOON)


# Where FastAPI says a parameter came from: the first part of a location only.
# A field may have one of these names itself (`query` in a memory search).
_SOURCES = ("body", "query", "path", "header", "cookie")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in _SOURCES else loc)]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(EventTooLarge)
    async def too_large(_: Request, exc: EventTooLarge) -> JSONResponse:
        return JSONResponse({"error": "too_large", "message": str(exc)}, 413)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.error, "message": exc.message}
        if exc.field is not None:
            body["field"] = exc.field
            body["details"] = [{"field": exc.field, "message": exc.message}]
        return JSONResponse({**body, **exc.extra}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        first = details[0]["field"] if details else "body"
        return JSONResponse(
            {"error": "invalid_request", "message": f"invalid field: {first}", "details": details},
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": _slug(exc.status_code), "message": str(exc.detail)},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )


def _slug(status: int) -> str:
    return {
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(status, "http_error")
