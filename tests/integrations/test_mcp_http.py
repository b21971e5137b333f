"""MCP connections end to end: GET /v1/connections/{id}/tools and POST /v1/actions calling a
tool of a local MCP server (built with the SDK the connector uses), through the integrations
group."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TenantKey
from tests.fakes.mcp_server import FakeMcpServer
from tests.harness import eventually, sse_events, unique
from tests.integrations.conftest import Integrations
from tests.integrations.helpers import act, connect
from tests.integrations.test_actions_http import outcome_announcements, redeliver
from tests.test_jobs_http import wait_finished

pytestmark = pytest.mark.timeout(300)

TOKEN = "mcp-http-token"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[FakeMcpServer]:
    with FakeMcpServer(token=TOKEN) as running:
        yield running


def credentials(url: str) -> dict[str, object]:
    return {"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}}


async def test_mcp_tools_are_listed_with_their_schemas(
    api: httpx.AsyncClient, tenant: TenantKey, mcp_server: FakeMcpServer
) -> None:
    connection = await connect(api, tenant, "mcp", credentials(mcp_server.url))
    response = await api.get(f"/v1/connections/{connection}/tools", headers=tenant.headers)
    assert response.status_code == 200, response.text
    tools = {tool["name"]: tool for tool in response.json()["tools"]}
    assert set(tools) == {"add", "note", "refuse"}
    assert tools["note"]["description"] == "Keep a note."
    assert tools["note"]["input_schema"]["properties"]["text"]["type"] == "string"

    # A native connection lists its actions the same way.
    github = await connect(api, tenant, "github", {"token": "ghp_test"})
    native = await api.get(f"/v1/connections/{github}/tools", headers=tenant.headers)
    assert {t["name"] for t in native.json()["tools"]} == {"create_issue", "create_comment"}

    missing = await api.get(
        "/v1/connections/00000000-0000-0000-0000-000000000000/tools", headers=tenant.headers
    )
    assert missing.status_code == 404


async def test_mcp_tool_called_once_under_redelivery(
    api: httpx.AsyncClient,
    tenant: TenantKey,
    integrations: Integrations,
    mcp_server: FakeMcpServer,
) -> None:
    connection = await connect(api, tenant, "mcp", credentials(mcp_server.url))
    text = unique("SLOW")  # the call takes a while: redeliveries arrive mid-call
    job_id = await act(api, tenant, connection, "note", {"text": text})
    await redeliver(integrations.settings, job_id, times=2)
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "succeeded", job
    assert job["kind"] == "action" and job["model"] == "mcp.note"
    result = json.loads(job["result"])
    assert result["content"] == [{"type": "text", "text": "noted"}]

    await redeliver(integrations.settings, job_id)

    async def reannounced() -> bool:
        return await outcome_announcements(integrations.settings, job_id) >= 2

    await eventually(reannounced, what="the redelivered event to be handled")
    assert mcp_server.count("note", text) == 1

    events = sse_events((await api.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text)
    assert [e["event"] for e in events][-2:] == ["result", "done"]


async def test_mcp_tool_error_is_the_actions_error(
    api: httpx.AsyncClient,
    tenant: TenantKey,
    mcp_server: FakeMcpServer,
) -> None:
    connection = await connect(api, tenant, "mcp", credentials(mcp_server.url))
    reason = unique("nope")
    job_id = await act(api, tenant, connection, "refuse", {"reason": reason})
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "failed", job
    assert f"refused: {reason}" in job["error"] and "mcp tool refuse failed" in job["error"]
    assert mcp_server.count("refuse", reason) == 1  # a tool's failure is not retried

    bad_name = await api.post(
        "/v1/actions",
        json={"connection_id": connection, "action": "no such tool!", "params": {}},
        headers=tenant.headers,
    )
    assert bad_name.status_code == 422


async def test_mcp_url_to_a_private_address_is_refused(
    api: httpx.AsyncClient, tenant: TenantKey, mcp_server: FakeMcpServer
) -> None:
    # The platform allows 127.0.0.1 only (its fakes listen there); 127.0.0.2 is loopback too.
    private = mcp_server.url.replace("127.0.0.1", "127.0.0.2")
    connection = await connect(api, tenant, "mcp", credentials(private))
    listed = await api.get(f"/v1/connections/{connection}/tools", headers=tenant.headers)
    assert listed.status_code == 502
    assert "not a public address" in listed.json()["message"]

    text = unique("private")
    job = await wait_finished(
        api, tenant, await act(api, tenant, connection, "note", {"text": text})
    )
    assert job["status"] == "failed" and "not a public address" in job["error"]
    assert mcp_server.count("note", text) == 0
