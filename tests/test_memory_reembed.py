"""A change of embedding model: old vectors are never searched; re-embedding replaces them."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from producers.memory_reembed import reembed
from tests.conftest import Running, TenantKey
from tests.harness import eventually, unique
from tests.test_memories_http import remember, search, wait_status


async def test_reembed_moves_memories_of_an_old_model_to_the_current_one(
    client: httpx.AsyncClient, tenant: TenantKey, db: Database, memory_worker: Running
) -> None:
    user = unique("user-")
    memory_id = await remember(client, tenant, user, "I keep bees on the roof")
    await wait_status(client, tenant, memory_id, "stored")
    # As if an older model had stored it: two chunks of another vector space.
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE memories SET embedding_model = 'old-model' WHERE id = :id"),
            {"id": uuid.UUID(memory_id)},
        )
        await session.execute(
            text("UPDATE memory_chunks SET model = 'old-model' WHERE memory_id = :id"),
            {"id": uuid.UUID(memory_id)},
        )
        await session.execute(
            text(
                "INSERT INTO memory_chunks (id, memory_id, tenant_id, user_id, chunk, text, "
                "model, dim, embedding) SELECT memory_id || '#1', memory_id, tenant_id, user_id, "
                "1, 'stale chunk', model, dim, embedding FROM memory_chunks WHERE memory_id = :id"
            ),
            {"id": uuid.UUID(memory_id)},
        )
    assert await search(client, tenant, user, "bees on the roof") == []

    publisher = Publisher(memory_worker.settings)
    await publisher.start()
    try:
        assert await reembed(db, publisher, "local-hash") >= 1
    finally:
        await publisher.stop()

    async def moved() -> bool:
        body = (await client.get(f"/v1/memories/{memory_id}", headers=tenant.headers)).json()
        return bool(body["embedding_model"] == "local-hash")

    await eventually(moved, 30, "the memory to be re-embedded")
    hits = await search(client, tenant, user, "bees on the roof")
    assert [(h["memory_id"], h["text"]) for h in hits] == [(memory_id, "I keep bees on the roof")]
    async with db.session() as session:
        models = await session.execute(
            text("SELECT model, count(*) FROM memory_chunks WHERE memory_id = :id GROUP BY model"),
            {"id": uuid.UUID(memory_id)},
        )
        assert dict(models.all()) == {"local-hash": 1}
