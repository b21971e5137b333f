"""Replaying the memory topic into an empty store rebuilds the same memories, deletes included."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text

from consumers import memory
from infra.db.engine import Database
from infra.embeddings.hashing import HashingEmbedder
from infra.kafka.codec import decode_raw
from infra.kafka.consumer import ConcurrentConsumer
from infra.kafka.publisher import Publisher
from infra.vectors.pgvector import PgVectorStore
from schemas import topics
from tests.conftest import Running, TenantKey
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
    events = {
        raw.id
        for raw in (
            decode_raw(r.value) for r in await read_topic(settings, topics.MEMORY_COMMANDS.name)
        )
        if raw.tenant_id == tenant.tenant_id
    }
    assert len(events) == 9  # 7 remembers, a forget, a user wipe
    group = unique("memory-replay-")
    ports = memory.Ports(
        settings, db, HashingEmbedder(384), PgVectorStore(db, dim=384), group=group
    )
    publisher = Publisher(settings)
    await publisher.start()
    consumer = ConcurrentConsumer(
        settings, group=group, topics=memory.TOPICS, handlers=memory.handlers(ports),
        publisher=publisher, concurrency=16,
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
    assert after == before
