"""A change of embedding model: old vectors are never searched; re-embedding replaces them."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from infra.db.engine import Database
from infra.embeddings import minilm
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from producers.memory_reembed import reembed
from tests.conftest import Running, TenantKey, new_platform
from tests.fakes.llm import FakeLLMServer
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
        tenant_id = uuid.UUID(str(tenant.tenant_id))
        assert await reembed(db, publisher, "local-hash", tenant_id) == 1
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


async def test_reembed_moves_hashed_memories_to_the_default_model_and_meaning_finds_them(
    client: httpx.AsyncClient,
    tenant: TenantKey,
    db: Database,
    memory_worker: Running,
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
) -> None:
    user = unique("user-")
    facts = [
        "My dog is called Biscuit",
        "My cat is called Luna and she sleeps all day",
        "What I want for my birthday is a mug with the name of my team on it",
    ]
    ids = [await remember(client, tenant, user, fact) for fact in facts]
    for memory_id in ids:
        stored = await wait_status(client, tenant, memory_id, "stored")
        assert stored["embedding_model"] == "local-hash"
    question = "what's the name of my puppy?"
    assert (await search(client, tenant, user, question))[0]["memory_id"] != ids[0]

    # The same database, served by processes on the default embedder.
    platform, settings = new_platform(services, fake_llm, tmp_path)
    default = {"AYUSH_MEMORY_EMBEDDER": "minilm", "AYUSH_MEMORY_EMBEDDER_THREADS": "1"}
    try:
        platform.start_ingress_with(default)
        platform.start_worker("memory", default)
        async with httpx.AsyncClient(base_url=platform.url, timeout=30) as semantic:
            assert await search(semantic, tenant, user, question) == []  # another vector space
            publisher = Publisher(settings)
            await publisher.start()
            try:
                moved = await reembed(
                    db, publisher, minilm.MODEL, tenant_id=uuid.UUID(str(tenant.tenant_id))
                )
            finally:
                await publisher.stop()
            assert moved == len(facts)  # this tenant's only: no one else's memory is touched

            async def all_moved() -> bool:
                bodies = [await wait_status(semantic, tenant, i, "stored") for i in ids]
                return all(b["embedding_model"] == minilm.MODEL for b in bodies)

            await eventually(all_moved, 60, "the memories to be re-embedded with MiniLM")
            hits = await search(semantic, tenant, user, question)
            assert hits[0]["memory_id"] == ids[0] and hits[0]["text"] == facts[0]
    finally:
        platform.stop()
