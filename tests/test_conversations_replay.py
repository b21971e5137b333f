"""The conversations projection: a replay of conversation.events (and of the response jobs)
into an empty database rebuilds the conversations, their items and the responses as they
are live, and `ayush verify --projection conversations` says so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from ayush import replay
from consumers.projections import conversations as conversation_projection
from infra.archive.format import StoredRecord
from infra.db import conversations as store
from infra.db.conversation_models import ResponseRecord
from infra.db.engine import Database
from infra.kafka.admin import create_topics
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from schemas import conversations as conv
from schemas import topics
from schemas.conversations_api import new_items
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from schemas.jobs import ChatJob, JobRequested
from schemas.versions import job_requested
from tests.conftest import Running, TenantKey, make_tenant, namespace_settings
from tests.databases import create_empty_database, drop_database
from tests.harness import unique
from tests.kafka_tools import read_topic
from tests.test_audit_replay import ayush_cli

GROUP = conversation_projection.group.name
ACTOR = Actor(kind="system", id="test")


def said(text: str, role: str = "user") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": text}


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _live_history(client: httpx.AsyncClient, tenant: TenantKey) -> set[str]:
    """Conversations made, changed and deleted through the API; the ids of those kept."""
    h = tenant.headers
    kept = await _ok(await client.post("/v1/conversations", headers=h, json={
        "items": [said("be brief", "system"), said("hello")], "metadata": {"v": "1"},
        "user_id": "ann",
    }))  # fmt: skip
    path = f"/v1/conversations/{kept['id']}"
    added = await _ok(await client.post(f"{path}/items", headers=h, json={
        "items": [said("hi", "assistant"),
                  {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "42"}],
    }))  # fmt: skip
    await _ok(await client.post(path, headers=h, json={"metadata": {"v": "2"}}))
    await _ok(await client.delete(f"{path}/items/{added['data'][0]['id']}", headers=h))
    other = await _ok(await client.post("/v1/conversations", headers=h, json={}))
    gone = await _ok(await client.post("/v1/conversations", headers=h, json={
        "items": [said("forget me")],
    }))  # fmt: skip
    await _ok(await client.delete(f"/v1/conversations/{gone['id']}", headers=h))
    return {kept["id"], other["id"]}


async def _rows(db: Database, tenant_id: object) -> dict[str, int]:
    counts = {}
    async with db.session() as session:
        for table in ("conversations", "conversation_items", "responses"):
            found = await session.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant_id}
            )
            counts[table] = int(found.scalar_one())
    return counts


async def test_a_replay_rebuilds_the_conversations_as_they_are_live(
    running: Running, client: httpx.AsyncClient, db: Database, services: ServiceAddresses
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    tenant = await make_tenant(db, admin=True)
    kept = await _live_history(client, tenant)
    live = await _rows(db, tenant.tenant_id)
    assert live == {"conversations": 2, "conversation_items": 4, "responses": 0}

    settings = running.settings
    # each change went out as its event, keyed by its conversation
    records = [
        (r.key, decode_raw(r.value))
        for r in await read_topic(settings, topics.CONVERSATION_EVENTS.name)
    ]
    mine = [(key, raw) for key, raw in records if raw.tenant_id == tenant.tenant_id]
    assert sorted(raw.type for _, raw in mine) == sorted([
        conv.CONVERSATION_CREATED, conv.CONVERSATION_CREATED, conv.CONVERSATION_CREATED,
        conv.ITEMS_ADDED, conv.CONVERSATION_UPDATED, conv.ITEM_DELETED, conv.CONVERSATION_DELETED,
    ])  # fmt: skip
    assert all(key == str(raw.payload["conversation_id"]).encode() for key, raw in mine)
    window = replay.Query(
        topics=conversation_projection.group.topics, start=started,
        end=datetime.now(UTC) + timedelta(minutes=1),
        tenant_id=tenant.tenant_id,  # type: ignore[arg-type]
    )  # fmt: skip
    rebuilt_url = await create_empty_database(services.database_url)
    rebuild = settings.model_copy(update={"database_url": rebuilt_url})
    rebuilt = Database(rebuilt_url, pool_size=1)
    try:
        report = await replay.into_group(
            rebuild, window, GROUP, reference_database_url=services.database_url
        )
        assert report.failures == []
        assert report.handled == 7  # 3 created, items added, updated, item deleted, deleted
        assert await _rows(rebuilt, tenant.tenant_id) == live
        assert await replay.verify(
            services.database_url, rebuilt_url, [tenant.tenant_id], ("conversations",)  # type: ignore[list-item]
        ) == []  # fmt: skip
        # the order of a user's threads and of their items comes back too
        tenant_id: uuid.UUID = tenant.tenant_id  # type: ignore[assignment]
        for database in (db, rebuilt):
            page = await store.list_conversations(database, tenant_id, user_id=None, limit=10)
            assert {conv.conversation_wire_id(r.id) for r in page.rows} == kept
        threads = await store.list_conversations(rebuilt, tenant_id, user_id="ann", limit=10)
        [thread] = threads.rows
        assert thread.conversation_metadata == {"v": "2"}
        items = await store.items(rebuilt, tenant_id, thread.id, limit=10, order="asc")
        assert [i.item.type for i in items.rows] == [
            "message", "message", "function_call", "function_call_output",
        ]  # fmt: skip

        # a second replay over the same rows changes nothing
        again = await replay.into_group(rebuild, window, GROUP)
        assert again.failures == [] and await _rows(rebuilt, tenant.tenant_id) == live

        # the command line, the projection named
        result = ayush_cli(services, settings, "verify", "--tenant", str(tenant.tenant_id),
                           "--against", rebuilt_url, "--projection", "conversations")  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().endswith("0 differences")

        # a lost item is reported
        async with rebuilt.transaction() as session:
            await session.execute(
                text("DELETE FROM conversation_items WHERE id = (SELECT min(id) FROM "
                     "conversation_items WHERE tenant_id = :t)"), {"t": tenant.tenant_id},
            )  # fmt: skip
        result = ayush_cli(services, settings, "verify", "--tenant", str(tenant.tenant_id),
                           "--against", rebuilt_url, "--projection", "conversations")  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        assert (
            "conversation_items:" in result.stdout and "missing from the rebuild" in result.stdout
        )
    finally:
        await rebuilt.close()
        await drop_database(services.database_url, rebuilt_url)


async def _publish_responses(
    settings: Settings, tenant_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A conversation with a response in it, a stored response deleted later, and a failed
    one neither stored nor in a conversation: the events the Responses API and model-calls
    publish."""
    conversation_id, answered, deleted, failed, unstored = (uuid7() for _ in range(5))
    now = int(datetime.now(UTC).timestamp())

    def event(type_: str, key: uuid.UUID, payload: Any) -> Envelope[Any]:
        return Envelope[Any](
            type=type_, tenant_id=tenant_id, actor=ACTOR, correlation_id=key, payload=payload
        )

    def response_job(
        response_id: uuid.UUID,
        question: str,
        *,
        store: bool,
        in_conversation: bool,
        params: dict[str, Any] | None = None,
    ) -> Envelope[Any]:
        items = new_items([conv.MessageItem(role="user", content=question)], response_id, 0, now)
        turn = conv.ResponseTurn(
            input=items,
            instructions="answer in one word",
            conversation_id=conversation_id if in_conversation else None,
            store=store,
            params=params,
        )
        job = ChatJob(
            kind="response", model="local-echo", response=turn, user_id="ann",
            temperature=0.5, max_tokens=64, metadata={"app": "replay"},
        )  # fmt: skip
        return job_requested(JobRequested(job_id=response_id, job=job), tenant_id, ACTOR)

    def finished(response_id: uuid.UUID, **fields: Any) -> Envelope[Any]:
        payload = conv.ResponseFinished(response_id=response_id, model="local-echo", **fields)
        return event(conv.RESPONSE_FINISHED, fields.get("conversation_id") or response_id, payload)

    answer = new_items([conv.MessageItem(role="assistant", content="four")], answered, 1, now)
    sequence = [
        (topics.CONVERSATION_EVENTS, event(conv.CONVERSATION_CREATED, conversation_id,
                                           conv.ConversationCreated(conversation_id=conversation_id,
                                                                    user_id="ann"))),
        (topics.AI_JOB_REQUESTED, response_job(answered, "2+2?", store=True, in_conversation=True,
                                               params=ECHOED)),
        (topics.CONVERSATION_EVENTS, finished(
            answered, conversation_id=conversation_id, status="completed", output=answer,
            usage=conv.ResponseUsage(input_tokens=9, output_tokens=1),
            context=conv.ContextSent(items=1, input_tokens=9),
        )),
        (topics.AI_JOB_REQUESTED, response_job(deleted, "hi", store=True, in_conversation=True)),
        (topics.CONVERSATION_EVENTS, finished(deleted, status="completed")),
        (topics.CONVERSATION_EVENTS, event(conv.RESPONSE_DELETED, deleted,
                                           conv.ResponseDeleted(response_id=deleted))),
        (topics.AI_JOB_REQUESTED, response_job(failed, "?", store=False, in_conversation=False)),
        (topics.CONVERSATION_EVENTS, finished(
            failed, status="failed", error_code="context_length_exceeded", error_message="long",
        )),
        (topics.AI_JOB_REQUESTED, response_job(unstored, "psst", store=False,
                                               in_conversation=True)),
        (topics.CONVERSATION_EVENTS, finished(
            unstored, conversation_id=conversation_id, status="completed",
            output=new_items([conv.MessageItem(role="assistant", content="ok")], unstored, 1, now),
        )),
    ]  # fmt: skip
    publisher = Publisher(settings)
    await publisher.start()
    try:
        for topic, envelope in sequence:
            await publisher.publish(topic.name, envelope)
    finally:
        await publisher.stop()
    return conversation_id, answered, deleted, failed


# What the Responses API echoes of a request, carried in its turn.
ECHOED = {
    "instructions": "answer in one word", "tools": [], "tool_choice": "auto",
    "temperature": 0.5, "top_p": None, "max_output_tokens": 64,
    "text": {"format": {"type": "text"}}, "metadata": {"app": "replay"},
    "truncation": "disabled", "parallel_tool_calls": True,
}  # fmt: skip


async def test_a_replay_rebuilds_responses_from_their_jobs_and_their_ends(
    db: Database, services: ServiceAddresses
) -> None:
    settings = namespace_settings(services, unique("conv-replay") + ".")
    await create_topics(settings)
    tenant = await make_tenant(db)
    tenant_id: uuid.UUID = tenant.tenant_id  # type: ignore[assignment]
    started = datetime.now(UTC) - timedelta(minutes=1)
    conversation_id, answered, deleted, failed = await _publish_responses(settings, tenant_id)
    window = replay.Query(
        topics=conversation_projection.group.topics, start=started,
        end=datetime.now(UTC) + timedelta(minutes=1), tenant_id=tenant_id,
    )  # fmt: skip
    rebuilt_url = await create_empty_database(services.database_url)
    rebuilt = Database(rebuilt_url, pool_size=1)
    try:
        report = await replay.into_group(
            settings.model_copy(update={"database_url": rebuilt_url}), window, GROUP,
            reference_database_url=services.database_url,
        )  # fmt: skip
        assert report.failures == [] and report.handled == 10

        row = await rebuilt.get(ResponseRecord, answered, tenant_id)
        assert row is not None
        assert (row.status, row.conversation_id, row.user_id, row.store) == (
            "completed", conversation_id, "ann", True,
        )  # fmt: skip
        assert row.usage == {"input_tokens": 9, "output_tokens": 1, "cached_tokens": 0}
        assert row.context == {"items": 1, "dropped": 0, "input_tokens": 9}
        assert row.completed_at is not None and row.error is None
        assert row.params == ECHOED  # as the ingress echoed it
        # each turn's question and answer, in order, in the conversation; a deleted
        # response's and an unstored one's stay there, held by no response
        items = await store.items(rebuilt, tenant_id, conversation_id, limit=10, order="asc")
        assert [(i.item.role, i.item.text()) for i in items.rows] == [
            ("user", "2+2?"), ("assistant", "four"), ("user", "hi"),
            ("user", "psst"), ("assistant", "ok"),
        ]  # fmt: skip
        async with rebuilt.session() as session:
            held = await session.execute(
                text("SELECT response_id, count(*) FROM conversation_items WHERE tenant_id = :t "
                     "GROUP BY response_id"), {"t": tenant_id},
            )  # fmt: skip
            assert dict(held.all()) == {answered: 2, None: 3}
        assert await rebuilt.get(ResponseRecord, deleted, tenant_id) is None
        failure = await rebuilt.get(ResponseRecord, failed, tenant_id)
        assert failure is not None and failure.status == "failed"
        assert failure.error == {"code": "context_length_exceeded", "message": "long"}
        # without params in its turn, the row's are made from its job
        params = failure.params
        assert (params["instructions"], params["temperature"], params["max_output_tokens"]) == (
            "answer in one word", 0.5, 64,
        )  # fmt: skip
        assert params["metadata"] == {"app": "replay"} and params["truncation"] == "disabled"
    finally:
        await rebuilt.close()
        await drop_database(services.database_url, rebuilt_url)


def test_records_of_one_millisecond_replay_in_the_order_of_the_groups_topics() -> None:
    """A response's request (ai.job.requested) comes before its end (conversation.events)
    when both carry the same millisecond, whatever their partitions and offsets, in a
    deployment whose topics have a prefix."""
    settings = Settings(topic_prefix="acme.")

    def record(topic: str, offset: int) -> StoredRecord:
        return StoredRecord(settings.topic(topic), 0, offset, 1_000, None, b"", [])

    ended = record(topics.CONVERSATION_EVENTS.name, 2)
    requested = record(topics.AI_JOB_REQUESTED.name, 7)
    group_topics = conversation_projection.group.topics
    assert replay.in_replay_order(settings, [ended, requested], group_topics) == [
        requested,
        ended,
    ]
