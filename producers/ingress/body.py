"""JSON request bodies, whatever Content-Type the client sent.

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

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 8 * 1024 * 1024


class JsonBody(Generic[M]):
    """A dependency that reads the body as `model`; the app documents `model` as its schema.

    Its errors are located in the body (`("body", field, ...)`), as FastAPI
    locates its own, so every 422 names the field itself.
    """

    def __init__(self, model: type[M]) -> None:
        self.model = model

    async def __call__(self, request: Request) -> M:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise RequestValidationError(
                [{"loc": ("body",), "msg": f"body over {MAX_BODY_BYTES} bytes", "type": "too_long"}]
            )
        try:
            return self.model.model_validate_json(raw or b"null")
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors]
            ) from exc


def json_body(model: type[M]) -> JsonBody[M]:
    return JsonBody(model)


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
