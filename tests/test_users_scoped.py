"""Signed-in users are scoped: each sees and changes only their own work.

A user (a sign-in token with the plain `user` role) that names another user in a
`user_id` (or OpenAI `user`) is refused with 403 naming the field; what another
user made is "not found", as another tenant's is. An API key still sees every
user of its tenant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from tests.conftest import Running, TenantKey, make_tenant
from tests.harness import Proc, eventually, unique
from tests.sign_in import user_headers

ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class People:
    admin: TenantKey
    developer: dict[str, str]  # a developer key's headers, in the same tenant
    developer_key_id: uuid.UUID
    alice: dict[str, str]
    bob: dict[str, str]
    alice_id: str
    bob_id: str


@pytest.fixture
async def people(client: httpx.AsyncClient, db: Database) -> People:
    admin = await make_tenant(db, admin=True)
    key, plaintext = await create_api_key(db, admin.tenant_id, role="developer")
    alice_id, bob_id = unique("alice-"), unique("bob-")
    return People(
        admin=admin,
        developer={"Authorization": f"Bearer {plaintext}"},
        developer_key_id=key.id,
        alice=await user_headers(client, admin, alice_id),
        bob=await user_headers(client, admin, bob_id),
        alice_id=alice_id,
        bob_id=bob_id,
    )


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": "local-echo", "messages": [{"role": "user", "content": content}], **extra}


def forbidden_field(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden", body
    return str(body["field"])


def openai_forbidden_param(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden", error
    return str(error["param"])


async def test_a_user_sees_only_their_own_jobs_and_streams(
    client: httpx.AsyncClient, people: People
) -> None:
    created = await client.post("/v1/jobs", json=chat("mine"), headers=people.alice)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    mine = await client.get(f"/v1/jobs/{job_id}", headers=people.alice)
    assert mine.status_code == 200 and mine.json()["user_id"] == people.alice_id
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events"):
        theirs = await client.get(path, headers=people.bob)
        assert theirs.status_code == 404, (path, theirs.text)
    # A key of the tenant sees every user's job, as before.
    seen = await client.get(f"/v1/jobs/{job_id}", headers=people.developer)
    assert seen.status_code == 200 and seen.json()["user_id"] == people.alice_id


async def test_a_user_naming_another_user_in_a_job_is_forbidden(
    client: httpx.AsyncClient, people: People
) -> None:
    other = await client.post(
        "/v1/jobs", json=chat("as bob", user_id=people.bob_id), headers=people.alice
    )
    assert forbidden_field(other) == "user_id"
    recall = chat("recall bob", memory={"user_id": people.bob_id})
    assert forbidden_field(await client.post("/v1/jobs", json=recall, headers=people.alice)) == (
        "memory.user_id"
    )
    own = await client.post(
        "/v1/jobs", json=chat("as me", user_id=people.alice_id), headers=people.alice
    )
    assert own.status_code == 202, own.text
    # A key still acts for any user of its tenant.
    keyed = await client.post(
        "/v1/jobs", json=chat("for bob", user_id=people.bob_id), headers=people.developer
    )
    assert keyed.status_code == 202, keyed.text


async def test_a_user_naming_another_user_on_the_openai_routes_is_forbidden(
    client: httpx.AsyncClient, people: People
) -> None:
    completion = await client.post(
        ENDPOINT, json=chat("hi", user=people.bob_id), headers=people.alice
    )
    assert openai_forbidden_param(completion) == "user"
    embedding = await client.post(
        "/v1/embeddings",
        json={"model": "local-hash", "input": "hi", "user_id": people.bob_id},
        headers=people.alice,
    )
    assert openai_forbidden_param(embedding) == "user_id"
    own = await client.post(ENDPOINT, json=chat("hello"), headers=people.alice)
    assert own.status_code == 200, own.text


async def test_a_user_sees_only_their_own_memories(
    client: httpx.AsyncClient, people: People
) -> None:
    remembered = await client.post(
        "/v1/memories", json={"text": "alice likes tea"}, headers=people.alice
    )
    assert remembered.status_code == 202, remembered.text
    memory_id = remembered.json()["id"]

    mine = await client.get(f"/v1/memories/{memory_id}", headers=people.alice)
    assert mine.status_code == 200 and mine.json()["user_id"] == people.alice_id
    listed = await client.get("/v1/memories", headers=people.alice)
    assert [m["id"] for m in listed.json()["data"]] == [memory_id]

    for method in ("GET", "DELETE"):
        theirs = await client.request(method, f"/v1/memories/{memory_id}", headers=people.bob)
        assert theirs.status_code == 404, (method, theirs.text)
    assert (await client.get("/v1/memories", headers=people.bob)).json()["data"] == []
    alices = {"user_id": people.alice_id}
    for refused in (
        await client.get("/v1/memories", params=alices, headers=people.bob),
        await client.delete("/v1/memories", params=alices, headers=people.bob),
        await client.post("/v1/memories", json={**alices, "text": "planted"}, headers=people.bob),
        await client.post(
            "/v1/memories/search", json={**alices, "query": "tea"}, headers=people.bob
        ),
    ):
        assert forbidden_field(refused) == "user_id"

    # A key reads any user's memories, and must still name the user.
    keyed = await client.get("/v1/memories", params=alices, headers=people.developer)
    assert [m["id"] for m in keyed.json()["data"]] == [memory_id]
    unnamed = await client.get("/v1/memories", headers=people.developer)
    assert unnamed.status_code == 422 and unnamed.json()["details"][0]["field"] == "user_id"


async def upload(client: httpx.AsyncClient, headers: dict[str, str], *lines: bytes) -> str:
    answer = await client.post(
        "/v1/files",
        files={"file": ("in.jsonl", b"\n".join(lines), "application/jsonl")},
        data={"purpose": "batch"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def batch_line(custom_id: str, **body: object) -> bytes:
    item = {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": chat(custom_id, **body),
    }
    return json.dumps(item).encode()


async def test_a_user_sees_only_their_own_files_and_batches(
    client: httpx.AsyncClient, people: People
) -> None:
    file_id = await upload(client, people.alice, batch_line("a"))
    for method, path in (
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
    ):
        theirs = await client.request(method, path, headers=people.bob)
        assert theirs.status_code == 404, (method, path, theirs.text)
    assert (await client.get(f"/v1/files/{file_id}", headers=people.developer)).status_code == 200

    batch = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
    stolen = await client.post("/v1/batches", json=batch, headers=people.bob)
    assert stolen.status_code == 404, stolen.text
    created = await client.post("/v1/batches", json=batch, headers=people.alice)
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]

    for method, path in (
        ("GET", f"/v1/batches/{batch_id}"),
        ("POST", f"/v1/batches/{batch_id}/cancel"),
        ("GET", f"/v1/batches/{batch_id}/events"),
    ):
        theirs = await client.request(method, path, headers=people.bob)
        assert theirs.status_code == 404, (method, path, theirs.text)
    listed = {
        name: [b["id"] for b in (await client.get("/v1/batches", headers=h)).json()["data"]]
        for name, h in (("alice", people.alice), ("bob", people.bob), ("key", people.developer))
    }
    assert listed == {"alice": [batch_id], "bob": [], "key": [batch_id]}
    mine = await client.get(f"/v1/batches/{batch_id}", headers=people.alice)
    assert mine.status_code == 200, mine.text


@pytest.fixture(scope="module")
def batch_worker(running: Running) -> Iterator[list[Proc]]:
    """The batch group and the lane that runs its lines, beside the session's platform."""
    procs: list[Proc] = []
    try:
        for group in ("batch", "model-calls-batch"):
            procs.append(running.platform.start_worker(group))
        yield procs
    finally:
        for proc in procs:
            proc.terminate(15)


@pytest.mark.timeout(300)  # two more worker starts: slow on a busy machine
async def test_a_users_batch_runs_as_that_user_and_its_results_are_theirs(
    client: httpx.AsyncClient, people: People, db: Database, batch_worker: list[Proc]
) -> None:
    file_id = await upload(client, people.alice, batch_line("a"), batch_line("b"))
    batch = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
    created = await client.post("/v1/batches", json=batch, headers=people.alice)
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]

    async def finished() -> dict[str, Any] | None:
        found = (await client.get(f"/v1/batches/{batch_id}", headers=people.alice)).json()
        return found if found["status"] in ("completed", "failed", "expired") else None

    done = await eventually(finished, 60, f"batch {batch_id} to finish")
    assert done["status"] == "completed", done
    async with db.session() as session:
        users = (
            await session.execute(
                text("SELECT user_id FROM jobs WHERE metadata->>'batch_id' = :b"),
                {"b": batch_id},
            )
        ).scalars()
        assert sorted(users) == [people.alice_id, people.alice_id]
    output = done["output_file_id"]
    assert (
        await client.get(f"/v1/files/{output}/content", headers=people.alice)
    ).status_code == 200
    assert (await client.get(f"/v1/files/{output}/content", headers=people.bob)).status_code == 404

    # A line naming another user refuses the user's batch.
    other = await upload(client, people.alice, batch_line("c", user=people.bob_id))
    refused = await client.post(
        "/v1/batches", json={**batch, "input_file_id": other}, headers=people.alice
    )
    refused_id = refused.json()["id"]

    async def failed() -> dict[str, Any] | None:
        found = (await client.get(f"/v1/batches/{refused_id}", headers=people.alice)).json()
        return found if found["status"] == "failed" else None

    errors = (await eventually(failed, 60, "the batch to be refused"))["errors"]["data"]
    assert [(e["code"], e["param"]) for e in errors] == [("forbidden", "body.user_id")]


async def add_usage(
    db: Database, tenant_id: object, key_id: uuid.UUID | None, user_id: str, cost: str
) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO usage_daily (tenant_id, day, api_key_id, user_id, model, events, "
                "input_tokens, output_tokens, cost_usd) "
                "VALUES (:t, :d, :k, :u, 'gpt-fake', 1, 10, 5, :c)"
            ),
            {"t": tenant_id, "d": datetime.now(UTC).date(), "k": key_id or uuid.UUID(int=0),
             "u": user_id, "c": cost},
        )  # fmt: skip


async def test_me_usage_shows_the_callers_own_usage_only(
    client: httpx.AsyncClient, people: People, db: Database
) -> None:
    tenant = people.admin.tenant_id
    await add_usage(db, tenant, None, people.alice_id, "0.10")
    await add_usage(db, tenant, people.developer_key_id, people.alice_id, "0.20")
    await add_usage(db, tenant, people.developer_key_id, people.bob_id, "0.40")
    await add_usage(db, tenant, None, people.bob_id, "0.80")

    tenant_wide = await client.get("/v1/usage", headers=people.alice)
    assert tenant_wide.status_code == 403 and "/v1/me/usage" in tenant_wide.json()["message"]

    def total(response: httpx.Response) -> str:
        assert response.status_code == 200, response.text
        return str(response.json()["total"]["cost_usd"])

    # The person's usage, whatever key or app made it; a key's own usage for a key.
    assert total(await client.get("/v1/me/usage", headers=people.alice)) == "0.30000000"
    assert total(await client.get("/v1/me/usage", headers=people.bob)) == "1.20000000"
    assert total(await client.get("/v1/me/usage", headers=people.developer)) == "0.60000000"
    by_user = await client.get(
        "/v1/me/usage", params={"group_by": "user", "format": "csv"}, headers=people.alice
    )
    assert by_user.headers["content-type"].startswith("text/csv")
    assert people.alice_id in by_user.text and people.bob_id not in by_user.text


async def test_me_says_who_is_calling(client: httpx.AsyncClient, people: People) -> None:
    me = (await client.get("/v1/me", headers=people.alice)).json()
    assert (me["role"], me["user_id"], me["key_id"]) == ("user", people.alice_id, None)
    assert me["tenant_id"] == str(people.admin.tenant_id)
    key = (await client.get("/v1/me", headers=people.developer)).json()
    assert (key["role"], key["key_id"], key["user_id"]) == (
        "developer",
        str(people.developer_key_id),
        None,
    )


async def test_a_user_never_reads_the_audit(client: httpx.AsyncClient, people: People) -> None:
    created = await client.post("/v1/jobs", json=chat("audited"), headers=people.alice)
    audit = await client.get(f"/v1/audit/jobs/{created.json()['id']}", headers=people.alice)
    assert audit.status_code == 403, audit.text


async def test_a_user_sees_and_continues_only_their_own_responses(
    client: httpx.AsyncClient, people: People
) -> None:
    body = {"model": "gpt-fake", "input": "mine"}
    created = await client.post("/v1/responses", json=body, headers=people.alice)
    assert created.status_code == 200, created.text
    assert created.json()["user"] == people.alice_id
    response_id = created.json()["id"]

    for path in (f"/v1/responses/{response_id}", f"/v1/responses/{response_id}/input_items"):
        assert (await client.get(path, headers=people.alice)).status_code == 200, path
        theirs = await client.get(path, headers=people.bob)
        assert theirs.status_code == 404, (path, theirs.text)
    removed = await client.delete(f"/v1/responses/{response_id}", headers=people.bob)
    assert removed.status_code == 404
    follow = {**body, "previous_response_id": response_id}
    refused = await client.post("/v1/responses", json=follow, headers=people.bob)
    assert refused.status_code == 404
    assert refused.json()["error"]["param"] == "previous_response_id"
    named = await client.post(
        "/v1/responses", json={**body, "user": people.alice_id}, headers=people.bob
    )
    assert openai_forbidden_param(named) == "user"
    # A key of the tenant sees every user's response.
    seen = await client.get(f"/v1/responses/{response_id}", headers=people.developer)
    assert seen.status_code == 200
