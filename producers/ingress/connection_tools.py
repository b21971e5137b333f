"""GET /v1/connections/{id}/tools: what a connection can do, as tools with JSON schemas.

An MCP connection's tools are the server's own (asked over the connection, kept for
`mcp_tools_cache_s`); a native connector's are its actions with their parameter schemas. Either
is what `POST /v1/actions` takes as `action` and `params`. A server that cannot be reached or
refuses is a 502 saying so.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from cachetools import TTLCache
from fastapi import APIRouter, Request

from infra.connectors import CATALOG
from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.connectors.mcp import Mcp, McpCredentials
from infra.db import actions as store
from infra.db.integration_models import Connection
from infra.errors import PermanentError, TransientError
from infra.settings import Settings
from infra.vault import Sealed
from producers.ingress.actions import SecretBox
from producers.ingress.auth import Authenticated
from producers.ingress.errors import ApiError
from producers.ingress.state import Svc

router = APIRouter(tags=["actions"])

MAX_CACHED = 1000


class ToolLister:
    """Asks MCP servers for their tools, through the connectors' address policy."""

    def __init__(self, settings: Settings) -> None:
        policy = AddressPolicy.parse(settings.connector_allow_private, settings.connector_allow)
        self._http = VendorHttp(
            settings.connector_timeout_s,
            policy,
            max_response_bytes=settings.connector_max_response_bytes,
        )
        self._mcp = Mcp(self._http)
        # Keyed by the sealed credentials too: a connection whose credentials change is asked
        # again.
        self._cache: TTLCache[tuple[uuid.UUID, str], list[dict[str, Any]]] | None = (
            TTLCache(MAX_CACHED, settings.mcp_tools_cache_s, time.monotonic)
            if settings.mcp_tools_cache_s > 0
            else None
        )

    async def tools(self, connection: Connection, credentials: McpCredentials) -> Any:
        key = (connection.id, hashlib.sha256(connection.sealed).hexdigest())
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        found = await self._mcp.tools(credentials)
        if self._cache is not None:
            self._cache[key] = found
        return found

    async def close(self) -> None:
        await self._http.close()


def lister(request: Request) -> ToolLister:
    lister: ToolLister = request.app.state.tool_lister
    return lister


@router.get("/v1/connections/{connection_id}/tools")
async def connection_tools(
    connection_id: uuid.UUID, caller: Authenticated, svc: Svc, box: SecretBox, request: Request
) -> dict[str, Any]:
    connection = await store.get_connection(svc.db, caller.tenant_id, connection_id)
    if connection is None:
        raise ApiError(404, "not_found", "no such connection")
    connector = CATALOG.get(connection.connector)
    if connector is None:
        raise ApiError(404, "not_found", "no such connection")
    if connector is not Mcp:
        tools = [
            {
                "name": spec.name,
                "description": spec.description,
                "input_schema": spec.params.model_json_schema(by_alias=True),
            }
            for spec in connector.actions.values()
        ]
        return {"connection_id": connection.id, "connector": connection.connector, "tools": tools}
    opened = box.open(
        Sealed(connection.key_id, connection.sealed), store.connection_context(connection)
    )
    credentials = McpCredentials.model_validate_json(opened)
    try:
        tools = await lister(request).tools(connection, credentials)
    except (PermanentError, TransientError) as exc:
        raise ApiError(502, "upstream_error", f"could not list the tools: {exc}") from exc
    return {"connection_id": connection.id, "connector": connection.connector, "tools": tools}
