"""MCP: the tools of a remote Model Context Protocol server, over streamable HTTP.

The one home of the `mcp` SDK (and of httpx2, the HTTP client it runs on). A connection holds
the server's URL and the headers that authenticate to it (e.g. Authorization), sealed like any
credentials. Its actions are the server's tools: the action's name is a tool's name, its params
the tool's arguments; the server checks them against the tool's input schema.

The URL is the tenant's choice, so every socket is opened through the address policy (the
httpx2 client runs on a pool whose network backend checks each address it connects to), and
redirects are not followed off the server's origin (the SDK's rule).

Errors: nothing sent yet (no connection, the handshake refused) may be tried again when it was
the network's doing; once a `tools/call` went out, a failure is "outcome unknown" and never
repeated, so a tool acts at most once. A tool's own failure (`isError`) is the action's error,
in the tool's words.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import httpcore2
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, PaginatedRequestParams, RequestParamsMeta
from pydantic import BaseModel, ConfigDict, Field

from infra.connectors.address_policy import AddressPolicy, CheckedBackend
from infra.connectors.base import RETRYABLE, ActionSpec, Connector, Strict
from infra.errors import PermanentError, TransientError

# The tool names the MCP specification allows (2025-11-25: 1 to 128 of these characters).
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_TOOLS = 1000  # pages of tools/list read at most, one tool each at worst


class McpCredentials(Strict):
    """The server's streamable HTTP endpoint, and the headers sent with every request to it."""

    url: str = Field(pattern=r"^https?://[^/?#]+", max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)


class ToolArguments(BaseModel):
    """A tool's arguments: any JSON object; the server validates them against its schema."""

    model_config = ConfigDict(extra="allow")


TOOL = ActionSpec("tool", "a tool of the MCP server; params are its arguments", ToolArguments)


class _CheckedTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport on a pool whose sockets go through the address policy (and no
    proxy from the environment, which would open them instead)."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            max_connections=10,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            # httpcore2 is httpcore renamed: the backend speaks its interface.
            network_backend=cast(Any, CheckedBackend(policy, httpcore2)),
        )


class Mcp(Connector):
    name = "mcp"
    title = "MCP server"
    auth = "headers"
    description = (
        "Call the tools of a remote MCP server (streamable HTTP); the action is a tool's name, "
        "the params its arguments. GET /v1/connections/{id}/tools lists them."
    )
    credentials = McpCredentials
    actions = MappingProxyType({})  # the server's tools: see `action`
    tenant_aimed = True

    @classmethod
    def action(cls, name: str) -> ActionSpec | None:
        if not TOOL_NAME.match(name):
            return None
        return ActionSpec(name, TOOL.description, ToolArguments)

    async def tools(self, credentials: McpCredentials) -> list[dict[str, Any]]:
        """The server's tools: name, description, input (and output) JSON schema."""
        found: list[dict[str, Any]] = []
        exchange = _Exchange()
        async with (
            self._deadline(credentials, exchange),
            self._session(credentials, exchange) as session,
        ):
            cursor: str | None = None
            for _ in range(MAX_TOOLS):
                page = await session.list_tools(
                    params=PaginatedRequestParams(cursor=cursor) if cursor else None
                )
                found.extend(_tool_view(tool) for tool in page.tools)
                cursor = page.next_cursor
                if not cursor or len(found) >= MAX_TOOLS:
                    break
        return found[:MAX_TOOLS]

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        exchange = _Exchange()
        async with (
            self._deadline(credentials, exchange),
            self._session(credentials, exchange) as session,
        ):
            exchange.calling = True
            result = await session.call_tool(
                action,
                params.model_dump(mode="json"),
                meta=cast(RequestParamsMeta, {"idempotency-key": idempotency_key}),
            )
        return self._outcome(action, result)

    def _outcome(self, tool: str, result: CallToolResult) -> dict[str, Any]:
        content = [block.model_dump(mode="json", exclude_none=True) for block in result.content]
        text = "\n".join(str(block["text"]) for block in content if block.get("type") == "text")
        if result.is_error:
            raise PermanentError(f"mcp tool {tool} failed: {text[:1000] or 'no message'}")
        answer: dict[str, Any] = {"content": content}
        if result.structured_content is not None:
            answer["structured_content"] = result.structured_content
        if len(json.dumps(answer)) > self.http.max_response_bytes:
            raise PermanentError(
                f"mcp tool {tool} answered with more than {self.http.max_response_bytes} bytes; "
                "the tool has run, its result is not kept"
            )
        return answer

    @asynccontextmanager
    async def _session(
        self, credentials: McpCredentials, exchange: _Exchange
    ) -> AsyncIterator[ClientSession]:
        assert self.http.policy is not None  # tenant_aimed: checked at construction
        timeout = self.http.timeout_s

        async def seen(response: httpx2.Response) -> None:
            if response.status_code >= 400:
                exchange.status = response.status_code

        async with (
            httpx2.AsyncClient(
                headers=credentials.headers,
                timeout=timeout,
                follow_redirects=False,
                trust_env=False,
                transport=_CheckedTransport(self.http.policy),
                event_hooks={"response": [seen]},
            ) as client,
            # Each use is one short exchange: no session is kept open between actions.
            streamable_http_client(credentials.url, http_client=client) as (read, write),
            ClientSession(read, write, read_timeout_seconds=timeout) as session,
        ):
            await session.initialize()
            yield session

    @asynccontextmanager
    async def _deadline(
        self, credentials: McpCredentials, exchange: _Exchange
    ) -> AsyncIterator[None]:
        """One deadline for the whole exchange, and its errors in our two kinds."""
        server = f"mcp server {_origin(credentials.url)}"
        try:
            async with asyncio.timeout(self.http.timeout_s):
                yield
        except TimeoutError:
            if not exchange.calling:
                raise TransientError(
                    f"{server} unreachable: no answer within {self.http.timeout_s:g} s"
                ) from None
            raise PermanentError(
                f"{server} did not answer within {self.http.timeout_s:g} s; "
                "outcome unknown, not retried"
            ) from None
        except Exception as exc:  # the SDK's task groups wrap what failed
            raise _translated(server, exc, exchange) from exc


@dataclass
class _Exchange:
    """What one use of the server got to: whether `tools/call` went out, the last HTTP error."""

    calling: bool = False
    status: int | None = None


def _translated(
    server: str, exc: BaseException, exchange: _Exchange
) -> PermanentError | TransientError:
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, PermanentError | TransientError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout):
            return TransientError(f"{server} unreachable: {type(leaf).__name__}")
    first = leaves[0] if leaves else exc
    said = f"{type(first).__name__}: {str(first)[:300]}"
    if exchange.status is not None:
        text = f"{server} answered {exchange.status} ({str(first)[:300]})"
        if exchange.status in RETRYABLE and not exchange.calling:
            return TransientError(text)
        return PermanentError(text)
    if isinstance(first, MCPError):
        return PermanentError(f"{server} refused: {str(first)[:500]}")
    if exchange.calling:
        return PermanentError(f"{server} did not answer ({said}); outcome unknown, not retried")
    return PermanentError(f"{server} failed before any tool was called ({said})")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _tool_view(tool: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.input_schema,
    }
    if tool.output_schema is not None:
        view["output_schema"] = tool.output_schema
    return view


def _origin(url: str) -> str:
    try:
        parsed = httpx2.URL(url)
    except Exception:  # a stored URL that no longer parses still gets named
        return "(not a URL)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"
