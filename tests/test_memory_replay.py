"""Replaying the memory topic into an empty store rebuilds the same memories, deletes included."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from ayush import replay
from consumers.groups.memory import group as memory
from consumers.projections import memory as memory_projection
from infra.db.engine import Database
from infra.db.memories import get_memory, insert_pending
from infra.embeddings.hashing import HashingEmbedder
from infra.embeddings.openai import OpenAIEmbedder
from infra.kafka.admin import create_topics
from infra.kafka.codec import decode_raw
from infra.kafka.policies import Each
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.vectors.pgvector import PgVectorStore
from schemas import topics
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.ids import uuid7
from schemas.memory import MEMORY_REMEMBER, Remember, user_key
from schemas.sealing import sealed_part
from tests.conftest import Running, TenantKey, namespace_settings
from tests.databases import create_empty_database, drop_database
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic
from tests.test_memories_http import remember, wait_status

Snapshot = dict[str, object]


async def snapshot(db: Database, tenant_id: object, users: list[str]) -> Snapshot:
    store = PgVectorStore(db, dim=384)
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT id, user_id, status, chunks, text FROM memories WHERE tenant_id = :t "
                "ORDER BY id"
            ),
            {"t": tenant_id},
        )
        memories = [tuple(row) for row in rows]
    vectors = {user: await store.memory_ids(tenant_id, user) for user in users}  # type: ignore[arg-type]
    return {"memories": memories, "vectors": vectors}


# The runner's backoff uses a tenacity argument that newer tenacity deprecates; in a
# worker process that is a log line, in-process under `filterwarnings = error` a failure.
@pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated:DeprecationWarning")
async def test_replay_into_an_empty_store_reproduces_the_same_set(
    client: httpx.AsyncClient, tenant: TenantKey, db: Database, memory_worker: Running
) -> None:
    alice, bob = unique("alice-"), unique("bob-")
    kept = [
        await remember(client, tenant, alice, f"alice fact {i} about gardens") for i in range(3)
    ]
    dropped = await remember(client, tenant, alice, "alice fact to forget")
    bobs_old = [await remember(client, tenant, bob, f"bob old fact {i}") for i in range(2)]
    for memory_id in [*kept, dropped, *bobs_old]:
        await wait_status(client, tenant, memory_id, "stored")
    await client.delete(f"/v1/memories/{dropped}", headers=tenant.headers)
    await client.delete("/v1/memories", params={"user_id": bob}, headers=tenant.headers)
    bobs_new = await remember(client, tenant, bob, "bob new fact after the wipe")
    await wait_status(client, tenant, bobs_new, "stored")

    async def settled() -> Snapshot | None:
        state = await snapshot(db, tenant.tenant_id, [alice, bob])
        return state if state["vectors"] == {alice: set(map(uuid.UUID, kept)),
                                             bob: {uuid.UUID(bobs_new)}} else None  # fmt: skip

    before = await eventually(settled, 30, "the live store to settle")
    statuses = {str(row[0]): row[2] for row in before["memories"]}  # type: ignore[attr-defined]
    assert statuses[dropped] == "deleted" and statuses[bobs_old[0]] == "deleted"

    async with db.transaction() as session:  # an empty store for this tenant
        for table in ("memories", "memory_chunks", "memory_user_forgets"):
            await session.execute(text(f"DELETE FROM {table} WHERE tenant_id = :t"),
                                  {"t": tenant.tenant_id})  # fmt: skip
    assert (await snapshot(db, tenant.tenant_id, [alice, bob]))["memories"] == []

    settings = memory_worker.settings
    commands = [
        decode_raw(r.value) for r in await read_topic(settings, topics.MEMORY_COMMANDS.name)
    ]
    mine = [raw for raw in commands if raw.tenant_id == tenant.tenant_id]
    # The wipe destroyed bob's data key: his old remembers stay sealed, and a replay skips them.
    events = {raw.id for raw in mine if sealed_part(raw.payload) is None}
    assert len(mine) == 9 and len(events) == 7  # 7 remembers, a forget, a user wipe
    group = unique("memory-replay-")
    ports = memory.Ports(
        settings, db, HashingEmbedder(384), PgVectorStore(db, dim=384), group=group
    )
    publisher = Publisher(settings)
    await publisher.start()
    consumer = GroupRunner(
        settings, group=group, topics=memory.group.topics, routes=memory.group.routes(ports),
        publisher=publisher, policy=Each(16),
    )  # fmt: skip
    runner = asyncio.create_task(consumer.run())
    try:

        async def replayed() -> bool:
            async with db.session() as session:
                done = await session.execute(
                    text("SELECT count(*) FROM processed_events WHERE consumer_group = :g "
                         "AND event_id = ANY(:ids)"),
                    {"g": group, "ids": list(events)},
                )  # fmt: skip
                return int(done.scalar_one()) == len(events)

        await eventually(replayed, 60, "the replay to reach the end of the tenant's events")
    finally:
        consumer.stop()
        await runner
        await publisher.stop()

    after = await snapshot(db, tenant.tenant_id, [alice, bob])
    # The same set, but for bob's forgotten memories: their tombstones cannot be rebuilt.
    forgotten = set(map(uuid.UUID, bobs_old))
    expected = [m for m in before["memories"] if m[0] not in forgotten]  # type: ignore[attr-defined]
    assert after == {**before, "memories": expected}


async def test_a_refused_embedding_replays_as_a_failed_memory(
    services: ServiceAddresses, db: Database, tenant: TenantKey, fake_llm: FakeLLMServer
) -> None:
    """The embedder's refusal travels as memory.embed_failed; the rebuild marks the memory so."""
    settings = namespace_settings(services, unique("embed-failed") + ".")
    await create_topics(settings)
    tenant_id: uuid.UUID = tenant.tenant_id  # type: ignore[assignment]
    user = unique("carol-")
    cmd = Remember(memory_id=uuid7(), user_id=user, text="carol's secret recipe")
    raw = RawEnvelope(
        type=MEMORY_REMEMBER, tenant_id=tenant_id, actor=Actor(kind="system", id="test"),
        correlation_id=user_key(tenant_id, user), payload=cmd.model_dump(mode="json"),
    )  # fmt: skip
    refusing = OpenAIEmbedder(
        "text-embedding-3-small@always=400", 8, base_url=fake_llm.openai_base_url
    )
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish(topics.MEMORY_COMMANDS.name, raw)
        await insert_pending(db, tenant_id, cmd.memory_id, user, cmd.text, {})
        ports = memory.Ports(
            settings, db, refusing, PgVectorStore(db, dim=8), group=unique("memory-"),
            publisher=publisher,
        )  # fmt: skip
        await memory.handle_remember([Envelope[Remember].model_validate(raw.model_dump())], ports)
    finally:
        await publisher.stop()
        await refusing.close()
    live = await get_memory(db, tenant_id, cmd.memory_id)
    assert live is not None and live.status == "failed" and "400" in (live.error or "")

    rebuilt_url = await create_empty_database(services.database_url)
    try:
        query = replay.Query(
            topics=memory_projection.group.topics, start=datetime.now(UTC) - timedelta(minutes=5),
            end=datetime.now(UTC) + timedelta(minutes=1), tenant_id=tenant_id,
        )  # fmt: skip
        rebuild = settings.model_copy(update={"database_url": rebuilt_url})
        report = await replay.into_group(
            rebuild, query, "memory", reference_database_url=services.database_url
        )
        assert report.failures == [] and report.handled == 2  # remember, embed_failed
        differences = await replay.verify(
            services.database_url, rebuilt_url, [tenant_id], ("memory",)
        )
        assert differences == []
    finally:
        await drop_database(services.database_url, rebuilt_url)
