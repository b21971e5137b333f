"""Errors of the OpenAI-compatible routes, in OpenAI's error JSON shape.

`{"error": {"message", "type", "param", "code"}}`, so the official SDKs
raise their own typed exceptions (BadRequestError, RateLimitError …).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from infra.errors import ModelNotPriced, PermanentError
from producers.ingress.body import BodyTooLarge
from producers.ingress.errors import (
    ApiError,
    ModelRefused,
    TooLarge,
)

M = TypeVar("M", bound=BaseModel)

# An upstream's status, as the gateway's client should see it.
_UPSTREAM = {
    400: (400, "invalid_request_error", "upstream_bad_request"),
    404: (404, "invalid_request_error", "model_not_found"),
    413: (400, "invalid_request_error", "context_length_exceeded"),
    422: (400, "invalid_request_error", "upstream_bad_request"),
    429: (429, "rate_limit_error", "rate_limit_exceeded"),
    504: (504, "timeout_error", "upstream_timeout"),
}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra: dict[str, Any] = {}  # more members of "error", e.g. the budget refused

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
                **self.extra,
            }
        }
        return Response(
            orjson.dumps(body),
            self.status,
            headers={**self.headers, **(extra_headers or {})},
            media_type="application/json",
        )


def from_api_error(exc: ApiError) -> OpenAIError:
    """An Ayush error in OpenAI's shape. A refused submission (SubmissionError) keeps what
    it says: a refused model names it, a spent budget is 402 `insufficient_quota` naming
    the budget, an event too large for the log 413 `request_too_large`."""
    if isinstance(exc, ModelRefused):
        return model_refused(exc.cause)
    if isinstance(exc, TooLarge):
        return OpenAIError(413, exc.message, "invalid_request_error", "request_too_large")
    kinds = {
        401: "authentication_error",
        402: "insufficient_quota",
        429: "rate_limit_error",
        503: "service_unavailable",
    }
    error = OpenAIError(
        exc.status,
        exc.message,
        kinds.get(exc.status, "invalid_request_error"),
        exc.error,
        exc.field,
        exc.headers,
    )
    error.extra = exc.extra
    return error


async def openai_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, or the OpenAI-shaped 413/400 that says why not."""
    try:
        raw = await request.body()
    except BodyTooLarge as exc:
        raise OpenAIError(413, exc.detail, "invalid_request_error", "request_too_large") from exc
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise invalid(exc) from exc


def invalid(exc: ValidationError) -> OpenAIError:
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = f"invalid value for {param}: {first['msg']}" if param else first["msg"]
    return OpenAIError(400, message, "invalid_request_error", "invalid_value", param)


def model_refused(exc: PermanentError, param: str = "model") -> OpenAIError:
    """A model a request may not name: unpriced (400 model_not_priced) or unknown (404)."""
    if isinstance(exc, ModelNotPriced):
        return OpenAIError(400, str(exc), "invalid_request_error", exc.code, param)
    return OpenAIError(404, str(exc), "invalid_request_error", "model_not_found", param)


def from_job_error(data: dict[str, Any]) -> OpenAIError:
    """A failed job's error entry ({message, status, retry_after}) as an HTTP error."""
    upstream = data.get("status")
    status, type_, code = _UPSTREAM.get(upstream or 0, (502, "upstream_error", "upstream_error"))
    # A worker that knows why (the history does not fit the model's window) says so.
    code = data.get("code") or code
    headers: dict[str, str] = {}
    if status == 429:
        retry_after = data.get("retry_after")
        headers["Retry-After"] = str(max(1, math.ceil(retry_after))) if retry_after else "1"
    return OpenAIError(
        status, str(data.get("message", "upstream failure")), type_, code, None, headers
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def openai_shaped(endpoint: Endpoint) -> Endpoint:
    """The endpoint's Ayush errors (a refused submission among them) in OpenAI's shape."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            raise from_api_error(exc) from exc

    return answer


def install(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(_: Request, exc: OpenAIError) -> Response:
        return exc.response()

    # A refused model reads the same at every door, /v1/jobs and the memory routes too:
    # OpenAI's body, whose `code` and `param` name it.
    @app.exception_handler(ModelRefused)
    async def refused_model(_: Request, exc: ModelRefused) -> Response:
        return model_refused(exc.cause).response()


def not_found(what: str, ident: str) -> OpenAIError:
    return OpenAIError(404, f"No such {what}: {ident}", "invalid_request_error", "not_found")
