"""A documented route that FastAPI serves without its per-request machinery.

The gateway's two busiest endpoints read and validate their bodies
themselves and return ready responses. For such an endpoint FastAPI's
request handler only adds work on every call: it solves the (empty)
dependency graph, inspects the body and wraps the response. A PlainRoute
keeps the route in the OpenAPI document and under the app's middleware and
exception handlers, and calls the endpoint with the request, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

from fastapi import Request, Response
from fastapi.routing import APIRoute


class PlainRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)
