"""The mcp connector against a local MCP server built with the same SDK: tools with their
schemas, a tool's result and its failure, and the address policy on the server's URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.connectors.mcp import Mcp, McpCredentials, ToolArguments
from infra.errors import PermanentError, TransientError
from infra.local_stack.process import free_port
from tests.fakes.mcp_server import FakeMcpServer

TOKEN = "mcp-secret-token"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMcpServer]:
    with FakeMcpServer(token=TOKEN) as running:
        yield running


async def connector(policy: AddressPolicy) -> AsyncIterator[Mcp]:
    http = VendorHttp(5, policy)
    try:
        yield Mcp(http)
    finally:
        await http.close()


@pytest.fixture
async def mcp() -> AsyncIterator[Mcp]:
    async for made in connector(AddressPolicy.parse(False, "127.0.0.1")):
        yield made


def creds(server: FakeMcpServer, token: str = TOKEN) -> McpCredentials:
    return McpCredentials(url=server.url, headers={"Authorization": f"Bearer {token}"})


async def test_tools_are_listed_with_their_schemas(server: FakeMcpServer, mcp: Mcp) -> None:
    tools = {tool["name"]: tool for tool in await mcp.tools(creds(server))}
    assert set(tools) == {"add", "note", "refuse"}
    assert tools["add"]["description"] == "Add two integers."
    schema = tools["add"]["input_schema"]
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == "integer"


async def test_tool_result_is_the_actions_result(server: FakeMcpServer, mcp: Mcp) -> None:
    result = await mcp.run("add", creds(server), ToolArguments(a=20, b=22), "key-1")
    assert result["structured_content"] == {"result": 42}
    assert result["content"] == [{"type": "text", "text": "42"}]
    assert server.count("add", "20+22") == 1


async def test_tool_error_is_the_actions_error(server: FakeMcpServer, mcp: Mcp) -> None:
    with pytest.raises(PermanentError, match=r"mcp tool refuse failed: .*refused: no way"):
        await mcp.run("refuse", creds(server), ToolArguments(reason="no way"), "key-2")


async def test_wrong_token_is_refused_without_calling(server: FakeMcpServer, mcp: Mcp) -> None:
    with pytest.raises(PermanentError, match="401"):
        await mcp.run("note", creds(server, "wrong"), ToolArguments(text="never"), "key-3")
    assert server.count("note", "never") == 0


async def test_mcp_url_to_a_private_address_is_refused_unless_allowed(
    server: FakeMcpServer,
) -> None:
    async for strict in connector(AddressPolicy()):
        with pytest.raises(PermanentError, match="not a public address"):
            await strict.tools(creds(server))
        with pytest.raises(PermanentError, match="not a public address"):
            await strict.run("note", creds(server), ToolArguments(text="private"), "key-4")
    assert server.count("note", "private") == 0
    async for allowed in connector(AddressPolicy(allow_private=True)):
        assert {t["name"] for t in await allowed.tools(creds(server))} >= {"note"}


async def test_unreachable_server_may_be_tried_again(mcp: Mcp) -> None:
    gone = McpCredentials(url=f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(TransientError, match="unreachable"):
        await mcp.run("note", gone, ToolArguments(text="x"), "key-5")


def test_tool_names_outside_the_specification_are_no_action() -> None:
    assert Mcp.action("create_issue") is not None
    assert Mcp.action("bad name") is None
    assert Mcp.action("x" * 129) is None
