"""Request bodies: every one capped, and JSON whatever Content-Type the client sent.

`BodyLimit` caps every request's body: a declared `Content-Length` over the
limit is refused before a byte is read, and a body without one (chunked) is
counted as it streams in and refused as soon as it passes the limit. The
check runs when the route first reads its body, so a route may first
authenticate, and may set a limit of its own with `allow_body` (uploads,
webhook deliveries). Over the limit, reading raises `BodyTooLarge`: 413.

`curl -d '{...}'` labels JSON as a form; refusing it would only annoy people.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.ingress.middleware import HttpMiddleware

M = TypeVar("M", bound=BaseModel)

LIMIT_KEY = "ayush.max_body_bytes"


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's own body parsing lets it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")
        self.limit = limit


class BodyLimit(HttpMiddleware):
    """ASGI middleware: no request body over the limit is read (see the module's doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[LIMIT_KEY] = self.max_bytes
        declared = _content_length(scope)
        received = 0

        async def capped() -> Message:
            nonlocal received
            limit: int = scope[LIMIT_KEY]
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped, send)


def allow_body(request: Request, max_bytes: int) -> None:
    """This request's body may be up to `max_bytes`; call before reading it."""
    request.scope[LIMIT_KEY] = max_bytes


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.isdigit():
        return None  # the server refuses a malformed length itself
    return int(value) if len(value) <= 18 else 10**18


class JsonBody(Generic[M]):
    """A dependency that reads the body as `model`; the app documents `model` as its schema.

    Its errors are located in the body (`("body", field, ...)`), as FastAPI
    locates its own, so every 422 names the field itself.
    """

    def __init__(self, model: type[M], optional: bool = False) -> None:
        self.model = model
        # An optional body may be left out: it reads as `{}`.
        self.empty = b"{}" if optional else b"null"

    async def __call__(self, request: Request) -> M:
        raw = await request.body()
        try:
            return self.model.model_validate_json(raw or self.empty)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors]
            ) from exc


def json_body(model: type[M], optional: bool = False) -> JsonBody[M]:
    return JsonBody(model, optional)


def route_body(route: APIRoute) -> type[BaseModel] | None:
    """The model a route reads its body as with `json_body`, if it does."""

    def find(dependant: Dependant) -> type[BaseModel] | None:
        for dependency in dependant.dependencies:
            if isinstance(dependency.call, JsonBody):
                return dependency.call.model
            found = find(dependency)
            if found is not None:
                return found
        return None

    return find(route.dependant)


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute of an app, also those of the routers it includes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # an included router
        if included is not None:
            yield from api_routes(included.routes)
