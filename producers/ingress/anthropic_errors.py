"""Errors of Anthropic's API routes, in Anthropic's error JSON shape.

`{"type": "error", "error": {"type", "message"}}` with the status Anthropic
gives each type, so the official `anthropic` SDK raises its own typed
exceptions (BadRequestError, AuthenticationError, RateLimitError …). The
gateway path these routes share with the OpenAI-compatible ones raises
OpenAIError and ApiError; they are translated here, at the door.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from producers.ingress import openai_errors as oe
from producers.ingress.body import BodyTooLarge
from producers.ingress.errors import ApiError

M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]

# Anthropic's error types by HTTP status.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class AnthropicError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return error_type(self.status)

    def wire(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.wire()), self.status, self.headers, media_type="application/json"
        )


def error_type(status: int) -> str:
    return TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def from_openai(error: oe.OpenAIError) -> AnthropicError:
    return AnthropicError(error.status, error.message, error.headers)


async def anthropic_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`, or the 413/400 that names what is wrong with it."""
    try:
        raw = await request.body()
    except BodyTooLarge as exc:
        raise AnthropicError(413, exc.detail) from exc
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise invalid(exc) from exc


def invalid(exc: ValidationError) -> AnthropicError:
    """The first problem, as Anthropic words it: `max_tokens: Field required`."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"])
    return AnthropicError(400, f"{field}: {first['msg']}" if field else first["msg"])


def anthropic_shaped(endpoint: Endpoint) -> Endpoint:
    """The endpoint's errors (Ayush's, the OpenAI-shaped ones of the shared gateway path,
    its own) as Anthropic's error responses."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AnthropicError as exc:
            return exc.response()
        except oe.OpenAIError as exc:
            return from_openai(exc).response()
        except ApiError as exc:
            return from_openai(oe.from_api_error(exc)).response()

    return answer
