"""The AsyncAPI and OpenAPI documents: committed, current, served, and self-consistent; the
README's access table current."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ayush import access_table, connector_table
from ayush.docs import DOCS, contract_documents, dumps, groups_table
from infra.connectors import describe
from producers.ingress.access import TABLE
from schemas import catalog, live, topics


def test_committed_documents_match_the_code() -> None:
    for name, document in contract_documents().items():
        committed = (DOCS / name).read_text()
        assert committed == dumps(document), f"docs/{name} is stale: run `ayush docs`"


def test_readme_access_table_matches_the_access_table() -> None:
    readme = access_table.README.read_text()
    stale = "README's access table is stale: run `ayush docs`"
    assert readme == access_table.with_table(readme), stale
    rows = readme.split(access_table.BEGIN)[1].split(access_table.END)[0].strip().splitlines()
    assert len(rows) == 2 + len(TABLE)  # heading, rule, one row per route


def test_a_stale_readme_access_table_is_rewritten() -> None:
    stale = f"intro\n{access_table.BEGIN}\n| GET | `/v1/gone` |\n{access_table.END}\nafter\n"
    fresh = access_table.with_table(stale)
    assert fresh != stale and "/v1/gone" not in fresh
    assert fresh.startswith("intro\n") and fresh.endswith(f"{access_table.END}\nafter\n")
    assert "| POST | `/v1/jobs` | `jobs:write` | ✓ | ✓ | ✓ | — | ✓ |" in fresh


def test_committed_group_table_matches_the_code() -> None:
    committed = (DOCS / "groups.md").read_text()
    assert committed == groups_table(), "docs/groups.md is stale: run `ayush docs`"


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_has_every_topic_and_event_and_its_refs_resolve() -> None:
    document = contract_documents()["asyncapi.json"]
    assert document["asyncapi"].startswith("3.")
    expected = {n for t in topics.ALL for n in (t.name, t.dead_letter)}
    assert set(document["channels"]) == expected | {"socket"}
    messages = document["components"]["messages"]
    frames = {m.__name__ for m in (*live.CLIENT, *live.SERVER)}
    assert {m["name"] for m in messages.values()} == {e.name for e in catalog.EVENTS} | frames
    socket = document["channels"]["socket"]
    assert socket["address"] == "/v1/ws" and set(socket["messages"]) == frames
    for ref in refs(document):
        assert resolve(document, ref) is not None, ref
    requested = resolve(document, messages["ai_job_requested"]["payload"]["$ref"])
    assert {"id", "type", "tenant_id", "correlation_id", "payload"} <= set(requested["properties"])


async def test_ingress_serves_both_documents(client: httpx.AsyncClient) -> None:
    served = {
        name: (await client.get(f"/{name}")).json() for name in ("asyncapi.json", "openapi.json")
    }
    documents = contract_documents()
    assert json.loads(dumps(served["asyncapi.json"])) == json.loads(
        dumps(documents["asyncapi.json"])
    )
    assert "/v1/jobs" in served["openapi.json"]["paths"]
    assert served["openapi.json"]["paths"].keys() == documents["openapi.json"]["paths"].keys()


def test_readme_connector_table_matches_the_connector_list() -> None:
    readme = access_table.README.read_text()
    assert readme == connector_table.with_table(readme), (
        "README's connector table is stale: run `ayush docs`"
    )
    rows = readme.split(connector_table.BEGIN)[1].split(connector_table.END)[0].strip()
    # heading, rule, one row per action (one for a connector of its server's tools: mcp)
    actions = sum(len(c["actions"]) or 1 for c in describe())
    assert len(rows.splitlines()) == 2 + actions
    assert "| `mcp` (MCP server) |" in rows


def test_a_stale_readme_connector_table_is_rewritten() -> None:
    stale = f"intro\n{connector_table.BEGIN}\n| `fax` |\n{connector_table.END}\nafter\n"
    fresh = connector_table.with_table(stale)
    assert "`fax`" not in fresh and fresh.endswith(f"{connector_table.END}\nafter\n")
    assert "| `slack` (Slack) | bot_token | `bot_token` |" in fresh
