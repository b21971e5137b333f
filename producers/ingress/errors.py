"""Every error answers with a JSON body; a bad field is named."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.errors import EventTooLarge

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


def unavailable(what: str, exc: BaseException) -> ApiError:
    """A 503 saying what is unavailable; why (hosts, addresses, driver text) goes to the log."""
    log.warning("%s unavailable: %s: %s", what, type(exc).__name__, exc)
    return ApiError(503, "unavailable", f"{what} unavailable, try again", RETRY_SOON)


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
        return JSONResponse(body, exc.status, headers=exc.headers)

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
