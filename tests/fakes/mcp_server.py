"""A local MCP server built with the SDK the connector uses, over streamable HTTP, counting
every tool call.

Tools:
    add(a, b)          a + b (structured content)
    note(text)         records `text` and answers "noted"; takes 1 s when text starts "SLOW"
    refuse(reason)     the tool fails (isError) with "refused: <reason>"
Requests must carry `Authorization: Bearer <token>` when a token is set.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from types import TracebackType
from typing import Any, Self

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.local_stack.process import free_port

START_TIMEOUT_S = 10


class FakeMcpServer:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.port = free_port()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def count(self, tool: str, argument: str) -> int:
        with self._lock:
            return self.calls[f"{tool}:{argument}"]

    def _record(self, tool: str, argument: Any) -> None:
        with self._lock:
            self.calls[f"{tool}:{argument}"] += 1

    def app(self) -> ASGIApp:
        server = MCPServer("fake-tools")

        @server.tool()
        def add(a: int, b: int) -> int:
            """Add two integers."""
            self._record("add", f"{a}+{b}")
            return a + b

        @server.tool()
        async def note(text: str) -> str:
            """Keep a note."""
            self._record("note", text)
            if text.startswith("SLOW"):
                await asyncio.sleep(1)
            return "noted"

        @server.tool()
        def refuse(reason: str) -> str:
            """Always fails, saying why."""
            self._record("refuse", reason)
            raise ToolError(f"refused: {reason}")

        inner = server.streamable_http_app(stateless_http=True, json_response=True)
        return _Guarded(inner, self.token)

    def start(self) -> Self:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="fake-mcp-server", daemon=True
        )
        self._thread.start()
        started = threading.Event()
        for _ in range(START_TIMEOUT_S * 100):
            if self._server.started:
                started.set()
                break
            started.wait(0.01)
        if not started.is_set():
            raise RuntimeError("fake MCP server did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Guarded:
    """Answers 401 to a request without the expected bearer token."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.token is not None:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {self.token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await self.app(scope, receive, send)
