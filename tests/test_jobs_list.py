"""GET /v1/jobs: a caller's jobs newest first, a page at a time, for reconnecting clients."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from infra.db.engine import Database
from tests.conftest import TenantKey, make_tenant
from tests.harness import eventually, unique
from tests.sign_in import user_headers


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": "local-echo", "messages": [{"role": "user", "content": content}], **extra}


async def submit(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    response = await client.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], **query: object
) -> dict[str, Any]:
    response = await client.get("/v1/jobs", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_jobs_are_listed_newest_first_a_page_at_a_time(
    client: httpx.AsyncClient, db: Database
) -> None:
    tenant = await make_tenant(db)
    ids = [await submit(client, tenant.headers, chat(f"job {i}")) for i in range(5)]
    newest_first = ids[::-1]

    first = await listed(client, tenant.headers, limit=2)
    assert first["object"] == "list"
    assert [j["id"] for j in first["data"]] == newest_first[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (
        newest_first[0],
        newest_first[1],
        True,
    )
    second = await listed(client, tenant.headers, limit=2, after=first["last_id"])
    assert [j["id"] for j in second["data"]] == newest_first[2:4] and second["has_more"]
    last = await listed(client, tenant.headers, limit=2, after=second["last_id"])
    assert [j["id"] for j in last["data"]] == newest_first[4:] and not last["has_more"]

    everything = await listed(client, tenant.headers)  # default limit 20
    assert [j["id"] for j in everything["data"]] == newest_first
    assert everything["data"][0]["model"] == "local-echo"
    other = await make_tenant(db)  # another tenant sees none of them
    assert (await listed(client, other.headers))["data"] == []


async def test_jobs_are_filtered_by_user_status_kind_and_time(
    client: httpx.AsyncClient, db: Database
) -> None:
    tenant = await make_tenant(db)
    before = datetime.now(UTC) - timedelta(seconds=5)
    mine = await submit(client, tenant.headers, chat("hi", user_id="u-1"))
    theirs = await submit(client, tenant.headers, chat("hi", user_id="u-2"))
    vectors = await submit(
        client, tenant.headers, {"kind": "embedding", "model": "local-hash", "input": ["a"]}
    )

    async def all_succeeded() -> set[str] | None:
        page = await listed(client, tenant.headers, status="succeeded")
        done = {j["id"] for j in page["data"]}
        return done if done == {mine, theirs, vectors} else None

    await eventually(all_succeeded, 30, "the jobs to succeed")
    assert [j["id"] for j in (await listed(client, tenant.headers, user_id="u-1"))["data"]] == [
        mine
    ]
    assert (await listed(client, tenant.headers, status="failed"))["data"] == []
    embeddings = await listed(client, tenant.headers, kind="embedding")
    assert [j["id"] for j in embeddings["data"]] == [vectors]
    chats = await listed(client, tenant.headers, kind="chat")
    assert [j["id"] for j in chats["data"]] == [theirs, mine]
    since = await listed(client, tenant.headers, since=before.isoformat())
    assert len(since["data"]) == 3
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await listed(client, tenant.headers, since=later))["data"] == []


async def test_a_signed_in_user_lists_only_their_own_jobs(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    alice_id, bob_id = unique("alice-"), unique("bob-")
    alice = await user_headers(client, admin, alice_id)
    bob = await user_headers(client, admin, bob_id)
    alices = await submit(client, alice, chat("mine"))
    bobs = await submit(client, bob, chat("mine too"))
    await submit(client, admin.headers, chat("the tenant's"))

    assert [j["id"] for j in (await listed(client, alice))["data"]] == [alices]
    assert [j["id"] for j in (await listed(client, alice, user_id=alice_id))["data"]] == [alices]
    refused = await client.get("/v1/jobs", params={"user_id": bob_id}, headers=alice)
    assert refused.status_code == 403, refused.text
    assert refused.json()["field"] == "user_id"
    # A key sees its tenant, or one user's with user_id.
    assert len((await listed(client, admin.headers))["data"]) == 3
    assert [j["id"] for j in (await listed(client, admin.headers, user_id=bob_id))["data"]] == [
        bobs
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "done"),
        ("kind", "poem"),
        ("limit", "0"),
        ("limit", "101"),
        ("since", "yesterday"),
        ("after", "not-an-id"),
    ],
)
async def test_bad_query_values_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantKey, field: str, value: str
) -> None:
    response = await client.get("/v1/jobs", params={field: value}, headers=tenant.headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["details"][0]["field"] == field
