"""A documented route that FastAPI serves without its per-request machinery.

The gateway's two busiest endpoints read and validate their bodies
themselves and return ready responses. For such an endpoint FastAPI's
request handler only adds work on every call: it solves the (empty)
dependency graph, inspects the body and wraps the response. A PlainRoute
keeps the route in the OpenAPI document and under the app's middleware and
exception handlers, and calls the endpoint with the request, nothing else.

Its body is documented by name (`json_body`), and `document_bodies` adds the
named models to the OpenAPI components, since FastAPI never saw them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


class PlainRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


def add_plain_routes(
    router: APIRouter, routes: Mapping[str, tuple[Callable[..., Any], type[BaseModel]]]
) -> None:
    """POST routes of `router` served as plain routes, each documented by its body model."""
    for path, (endpoint, body) in routes.items():
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            route_class_override=PlainRoute,
            openapi_extra=json_body(body),
        )


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a plain route whose body is `model`, as JSON."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_bodies(document: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    """Add the models (and the models they use) to an OpenAPI document's components."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
