"""Errors in OpenAI's shape, for the OpenAI-compatible routes (the official SDKs read it)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "server_error"}


class OpenAIError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def not_found(what: str, ident: str) -> OpenAIError:
    return OpenAIError(404, f"No such {what}: {ident}", code="not_found")


def install(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        body = {
            "error": {
                "message": exc.message,
                "type": _TYPES.get(exc.status, "invalid_request_error"),
                "param": exc.param,
                "code": exc.code,
            }
        }
        return JSONResponse(body, exc.status)
