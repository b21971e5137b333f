"""The Conversations API as OpenAI's SDK and a browser's user see it: create, read, update,
delete, items in pages; a user's threads; errors in OpenAI's shape; writes taken back when
their event cannot be published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import text

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.local_stack import ServiceAddresses
from tests.conftest import Running, TenantKey, ingress_alone, make_tenant
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, unique
from tests.sign_in import user_headers


@pytest.fixture
async def sdk(running: Running, tenant: TenantKey) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=f"{running.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    )
    yield client
    await client.close()


def said(text: str, role: str = "user") -> Any:
    return {"type": "message", "role": role, "content": text}


def text_of(item: Any) -> str:
    """The text of a message item the SDK returned (its first part)."""
    return str(item.content[0].text)


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    return dict(error)


async def test_the_official_sdk_creates_reads_updates_and_deletes_a_conversation(
    sdk: openai.AsyncOpenAI,
) -> None:
    created = await sdk.conversations.create(
        items=[
            {"type": "message", "role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello!"},
        ],
        metadata={"topic": "greetings"},
    )
    assert created.id.startswith("conv_") and created.object == "conversation"
    assert created.metadata == {"topic": "greetings"}

    fetched = await sdk.conversations.retrieve(created.id)
    assert (fetched.id, fetched.created_at) == (created.id, created.created_at)

    updated = await sdk.conversations.update(created.id, metadata={"topic": "farewells"})
    assert updated.metadata == {"topic": "farewells"}
    assert (await sdk.conversations.retrieve(created.id)).metadata == {"topic": "farewells"}

    items = await sdk.conversations.items.list(created.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [  # type: ignore[union-attr]
        ("message", "system"),
        ("message", "user"),
    ]
    first: Any = items.data[1]
    assert first.content[0].type == "input_text" and text_of(first) == "Hello!"

    added = await sdk.conversations.items.create(
        created.id,
        items=[
            {"type": "message", "role": "assistant", "content": "Hi."},
            {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        ],
    )
    assert [i.type for i in added.data] == ["message", "function_call_output"]
    assert added.data[0].id.startswith("msg_") and added.data[1].id.startswith("fco_")  # type: ignore[union-attr]
    one: Any = await sdk.conversations.items.retrieve(added.data[0].id, conversation_id=created.id)  # type: ignore[arg-type]
    assert one.content[0].type == "output_text" and text_of(one) == "Hi."

    after_delete = await sdk.conversations.items.delete(
        added.data[0].id,  # type: ignore[arg-type]
        conversation_id=created.id,
    )
    assert after_delete.id == created.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.items.retrieve(added.data[0].id, conversation_id=created.id)  # type: ignore[arg-type]
    remaining = await sdk.conversations.items.list(created.id)
    assert len(remaining.data) == 3

    deleted = await sdk.conversations.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        created.id,
        True,
        "conversation.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.items.list(created.id)


async def test_items_come_in_pages_by_after_limit_and_order(sdk: openai.AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create(items=[said(f"m{i}") for i in range(3)])
    for batch in ((3, 4), (5, 6)):  # later requests' items sort after earlier ones
        await sdk.conversations.items.create(conversation.id, items=[said(f"m{i}") for i in batch])

    def texts(page: Any) -> list[str]:
        return [text_of(item) for item in page.data]

    newest = await sdk.conversations.items.list(conversation.id, limit=3)
    assert texts(newest) == ["m6", "m5", "m4"] and newest.has_more
    following = await sdk.conversations.items.list(
        conversation.id, limit=3, after=newest.last_id or ""
    )
    assert texts(following) == ["m3", "m2", "m1"] and following.has_more
    last = await sdk.conversations.items.list(
        conversation.id, limit=3, after=following.last_id or ""
    )
    assert texts(last) == ["m0"] and not last.has_more

    oldest = await sdk.conversations.items.list(conversation.id, limit=4, order="asc")
    assert texts(oldest) == ["m0", "m1", "m2", "m3"] and oldest.has_more
    # the SDK's own paging walks the whole conversation
    walked = [text_of(item) async for item in sdk.conversations.items.list(
        conversation.id, limit=2, order="asc"
    )]  # fmt: skip
    assert walked == [f"m{i}" for i in range(7)]
    default = await sdk.conversations.items.list(conversation.id)
    assert len(default.data) == 7 and not default.has_more


async def test_a_users_threads_are_listed_newest_activity_first(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    user = unique("reader-")

    async def create(title: str) -> str:
        made = await client.post(
            "/v1/conversations",
            json={"metadata": {"name": title}, "user_id": user},
            headers=tenant.headers,
        )
        assert made.status_code == 200, made.text
        assert made.json()["user_id"] == user
        return str(made.json()["id"])

    first, second, third = [await create(t) for t in ("a", "b", "c")]
    other = await client.post("/v1/conversations", json={}, headers=tenant.headers)
    assert other.status_code == 200 and other.json()["user_id"] is None
    # activity in the first moves it to the front
    added = await client.post(
        f"/v1/conversations/{first}/items", json={"items": [said("again")]}, headers=tenant.headers
    )
    assert added.status_code == 200, added.text

    async def listing(**params: Any) -> dict[str, Any]:
        answer = await client.get(
            "/v1/conversations", params={"user_id": user, **params}, headers=tenant.headers
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    everything = await listing()
    assert [c["id"] for c in everything["data"]] == [first, third, second]
    assert everything["data"][0]["updated_at"] >= everything["data"][0]["created_at"]
    page = await listing(limit=2)
    assert [c["id"] for c in page["data"]] == [first, third] and page["has_more"]
    rest = await listing(limit=2, after=page["last_id"])
    assert [c["id"] for c in rest["data"]] == [second] and not rest["has_more"]
    oldest = await listing(order="asc", limit=1)
    assert [c["id"] for c in oldest["data"]] == [second]
    # without a user: every conversation of the tenant, the keyless one too
    whole = await client.get("/v1/conversations", headers=tenant.headers)
    assert {c["id"] for c in whole.json()["data"]} == {first, second, third, other.json()["id"]}


async def test_a_signed_in_user_sees_only_their_own_conversations(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    alice_id, bob_id = unique("alice-"), unique("bob-")
    alice = await user_headers(client, admin, alice_id)
    bob = await user_headers(client, admin, bob_id)

    mine = await client.post("/v1/conversations", json={"items": [said("hi")]}, headers=alice)
    assert mine.status_code == 200, mine.text
    assert mine.json()["user_id"] == alice_id
    conversation = mine.json()["id"]
    # made by a key for alice: hers too
    for_her = await client.post(
        "/v1/conversations", json={"user_id": alice_id}, headers=admin.headers
    )
    assert for_her.status_code == 200, for_her.text

    listed = await client.get("/v1/conversations", headers=alice)
    assert {c["id"] for c in listed.json()["data"]} == {conversation, for_her.json()["id"]}
    assert (await client.get("/v1/conversations", headers=bob)).json()["data"] == []
    keyed = await client.get("/v1/conversations", params={"user_id": alice_id},
                             headers=admin.headers)  # fmt: skip
    assert len(keyed.json()["data"]) == 2

    for method, path, body in (
        ("GET", f"/v1/conversations/{conversation}", None),
        ("POST", f"/v1/conversations/{conversation}", {"metadata": {"x": "y"}}),
        ("DELETE", f"/v1/conversations/{conversation}", None),
        ("GET", f"/v1/conversations/{conversation}/items", None),
        ("POST", f"/v1/conversations/{conversation}/items", {"items": [said("psst")]}),
    ):
        answer = await client.request(method, path, json=body, headers=bob)
        assert openai_error(answer, 404)["code"] == "not_found", (method, path)
    # naming someone else is refused, naming the field
    as_bob = await client.post("/v1/conversations", json={"user_id": bob_id}, headers=alice)
    assert openai_error(as_bob, 403)["param"] == "user_id"
    snoop = await client.get("/v1/conversations", params={"user_id": bob_id}, headers=alice)
    assert openai_error(snoop, 403)["param"] == "user_id"
    # and untouched by bob's tries
    items = await client.get(f"/v1/conversations/{conversation}/items", headers=alice)
    assert len(items.json()["data"]) == 1
    # another tenant's key does not find it either
    stranger = await make_tenant(db, admin=True)
    elsewhere = await client.get(f"/v1/conversations/{conversation}", headers=stranger.headers)
    assert openai_error(elsewhere, 404)["code"] == "not_found"


async def test_an_auditor_reads_the_tenants_conversations_and_changes_none(
    client: httpx.AsyncClient, db: Database, tenant: TenantKey
) -> None:
    _, plaintext = await create_api_key(db, tenant.tenant_id, role="auditor")  # type: ignore[arg-type]
    auditor = {"Authorization": f"Bearer {plaintext}"}
    made = await client.post(
        "/v1/conversations", json={"items": [said("hi")], "user_id": "u1"}, headers=tenant.headers
    )
    path = f"/v1/conversations/{made.json()['id']}"
    assert (await client.get(path, headers=auditor)).status_code == 200
    assert (await client.get(f"{path}/items", headers=auditor)).status_code == 200
    listed = await client.get("/v1/conversations", headers=auditor)
    assert [c["id"] for c in listed.json()["data"]] == [made.json()["id"]]
    refused = await client.post(f"{path}/items", json={"items": [said("x")]}, headers=auditor)
    assert openai_error(refused, 403)["type"] == "invalid_request_error"
    assert openai_error(await client.delete(path, headers=auditor), 403)


async def test_bad_input_is_an_openai_400_naming_the_param(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    made = await client.post("/v1/conversations", json={}, headers=tenant.headers)
    conversation = made.json()["id"]
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/v1/conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("POST", "/v1/conversations", {"metadata": {"k" * 65: "v"}}, "metadata"),
        ("POST", "/v1/conversations", {"metadata": {"k": "v" * 513}}, "metadata.k"),
        ("POST", "/v1/conversations", {"items": [said("x")] * 21}, "items"),
        ("POST", "/v1/conversations", {"items": [{"role": "robot", "content": "x"}]},
         "items.0.role"),
        ("POST", "/v1/conversations", {"items": [
            {"role": "user", "content": [{"type": "input_text", "text": "x"}] * 101}]},
         "items.0.content"),
        ("POST", "/v1/conversations", {"items": [said("a\u0000b")]}, "items.0.content"),
        ("POST", "/v1/conversations", {"metadata": {"k\u0000": "v"}}, "metadata"),
        ("POST", "/v1/conversations", {"user_id": "u" * 201}, "user_id"),
        ("POST", "/v1/conversations", {"title": "x"}, "title"),
        ("POST", f"/v1/conversations/{conversation}/items", {"items": []}, "items"),
        ("POST", f"/v1/conversations/{conversation}/items",
         {"items": [{"type": "function_call", "name": "f"}]}, "items.0.call_id"),
        ("GET", f"/v1/conversations/{conversation}/items?limit=101", None, "limit"),
        ("GET", f"/v1/conversations/{conversation}/items?order=up", None, "order"),
        ("GET", f"/v1/conversations/{conversation}/items?after=msg_nope", None, "after"),
        ("GET", "/v1/conversations?after=nope", None, "after"),
        ("GET", f"/v1/conversations?after={conversation[:-4]}0000", None, "after"),
    ]  # fmt: skip
    for method, path, body, param in cases:
        answer = await client.request(method, path, json=body, headers=tenant.headers)
        error = openai_error(answer, 400)
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), (path, body)
    for path in ("/v1/conversations/conv_nope", "/v1/conversations/conv_0123/items/msg_x",
                 f"/v1/conversations/{conversation}/items/msg_nope"):  # fmt: skip
        error = openai_error(await client.get(path, headers=tenant.headers), 404)
        assert error["code"] == "not_found" and error["type"] == "invalid_request_error"
    unsigned = await client.get("/v1/conversations")
    assert openai_error(unsigned, 401)["type"] == "authentication_error"


async def test_a_message_text_is_not_held_to_the_limit_of_its_parts(
    sdk: openai.AsyncOpenAI,
) -> None:
    """A message's content is a text or up to 100 parts: the text may be longer than 100."""
    text = "word " * 1000
    made = await sdk.conversations.create(items=[said(text)])
    [item] = (await sdk.conversations.items.list(made.id)).data
    assert text_of(item) == text


MIB = 1024 * 1024


@pytest.fixture(scope="module")
def small_log(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """An ingress alone whose event log takes records of 1 MiB at most."""
    env = {"AYUSH_KAFKA_MAX_MESSAGE_BYTES": str(MIB)}
    with ingress_alone(services, fake_llm, tmp_path_factory.mktemp("conv-log"), env) as alone:
        yield alone


async def _rows(db: Database, tenant: TenantKey) -> tuple[int, int]:
    counts = []
    async with db.session() as session:
        for table in ("conversations", "conversation_items"):
            found = await session.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant.tenant_id}
            )
            counts.append(int(found.scalar_one()))
    return counts[0], counts[1]


async def test_a_write_whose_event_is_not_published_is_taken_back(
    small_log: Platform, db: Database
) -> None:
    tenant = await make_tenant(db)
    # each item within its limits, together over the log's record size
    big = [said("word " * (MIB // 12)) for _ in range(3)]
    async with httpx.AsyncClient(base_url=small_log.url, timeout=60) as client:
        refused = await client.post("/v1/conversations", json={"items": big},
                                    headers=tenant.headers)  # fmt: skip
        assert openai_error(refused, 413)["code"] == "request_too_large"
        assert await _rows(db, tenant) == (0, 0)

        made = await client.post("/v1/conversations", json={"items": [said("small")]},
                                 headers=tenant.headers)  # fmt: skip
        assert made.status_code == 200, made.text
        conversation = made.json()["id"]
        refused = await client.post(f"/v1/conversations/{conversation}/items",
                                    json={"items": big}, headers=tenant.headers)  # fmt: skip
        assert openai_error(refused, 413)["code"] == "request_too_large"
        assert await _rows(db, tenant) == (1, 1)
        listed = await client.get(f"/v1/conversations/{conversation}/items",
                                  headers=tenant.headers)  # fmt: skip
        assert [i["content"][0]["text"] for i in listed.json()["data"]] == ["small"]
