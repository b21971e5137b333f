"""Query strings and paths with a NUL character are refused before any route runs.

Postgres stores no NUL in text, and a query parameter (a memory's `user_id`)
goes straight into a query or an event. Bodies are checked by their models
(schemas.request); this covers what no model sees.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MESSAGE = "a NUL character (\\u0000) is not allowed"


def nul_parameter(scope: Scope) -> str | None:
    """The name of the query parameter (or "path") that holds a NUL, if one does."""
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return name.replace("\x00", "") or "query"
    if "\x00" in scope.get("path", ""):
        return "path"
    return None


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = nul_parameter(scope) if scope["type"] == "http" else None
        if field is None:
            await self.app(scope, receive, send)
            return
        body = {
            "error": "invalid_request",
            "message": f"invalid field: {field}",
            "details": [{"field": field, "message": MESSAGE}],
        }
        await JSONResponse(body, 422)(scope, receive, send)
