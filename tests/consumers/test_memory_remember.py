"""The memory group's remembers in lists: stored once each, forgets win, a bad text fails alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import text

from consumers.groups.memory import group as memory
from infra.db.engine import Database
from infra.db.memories import get_memory
from infra.embeddings.hashing import HashingEmbedder
from infra.errors import PermanentError
from infra.kafka.admin import create_topics
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from infra.vectors.base import Chunk
from infra.vectors.pgvector import PgVectorStore
from schemas import memory as events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.conftest import TenantKey, namespace_settings
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic

ACTOR = Actor(kind="system", id="test")
# The runner's backoff uses a tenacity argument that newer tenacity deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The 'initial' parameter is deprecated:DeprecationWarning"
)


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting its calls; refuses any text with `refuse` in it."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__(384)
        self.calls = 0
        self.refuse = refuse

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.refuse is not None and any(self.refuse in t for t in texts):
            raise PermanentError("400: the embedder refused a text")
        return await super().embed(texts)


class StopsAfterVectors(PgVectorStore):
    """Writes the vectors, then hangs: a worker that dies between its vectors and claims."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, dim=384)
        self.written = asyncio.Event()

    async def upsert(self, chunks: Sequence[Chunk]) -> None:
        await super().upsert(chunks)
        self.written.set()
        await asyncio.Event().wait()


def command(tenant: uuid.UUID, user: str, type_: str, payload: BaseModel) -> Envelope[Any]:
    return Envelope[Any](
        type=type_, tenant_id=tenant, actor=ACTOR, correlation_id=events.user_key(tenant, user),
        payload=payload,
    )  # fmt: skip


def remember(tenant: uuid.UUID, user: str, body: str) -> Envelope[Any]:
    cmd = events.Remember(memory_id=uuid7(), user_id=user, text=body)
    return command(tenant, user, events.MEMORY_REMEMBER, cmd)


async def publish(settings: Settings, commands: list[Envelope[Any]]) -> None:
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish_many([(topics.MEMORY_COMMANDS.name, c) for c in commands])
    finally:
        await publisher.stop()


async def run_until(
    settings: Settings, ports: memory.Ports, done: Any, what: str, drain_s: float = 5.0
) -> None:
    """Run the memory group (its own policy) under `ports.group` until `done()` holds."""
    publisher = Publisher(settings)
    await publisher.start()
    ports = memory.Ports(settings, ports.db, ports.embedder, ports.store, ports.group, publisher)
    consumer = GroupRunner(
        settings, group=ports.group, topics=memory.group.topics,
        routes=memory.group.routes(ports), publisher=publisher,
        policy=memory.group.policy(settings),
    )  # fmt: skip
    runner = asyncio.create_task(consumer.run(drain_timeout_s=drain_s))
    try:
        await eventually(done, 60, what)
    finally:
        consumer.stop()
        await runner
        await publisher.stop()


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.session() as session:
        return (await session.execute(text(sql), params)).scalar_one()


def list_settings(services: ServiceAddresses, name: str) -> Settings:
    # One list for everything published before the group starts.
    settings = namespace_settings(services, unique(name) + ".")
    return settings.model_copy(update={"memory_batch_events": 1000, "memory_batch_age_s": 1.0})


async def test_a_list_of_remembers_is_stored_once_each_after_a_crash_between_vectors_and_claims(
    services: ServiceAddresses, db: Database, tenant: TenantKey
) -> None:
    settings = list_settings(services, "mem-crash")
    await create_topics(settings)
    tenant_id: uuid.UUID = tenant.tenant_id  # type: ignore[assignment]
    users = [unique("user-") for _ in range(4)]
    commands = [remember(tenant_id, users[i % 4], f"fact {i} about the garden") for i in range(40)]
    ids = [c.payload.memory_id for c in commands]
    await publish(settings, commands)
    group = unique("memory-")
    claimed = "SELECT count(*) FROM processed_events WHERE consumer_group = :g"
    chunks = "SELECT count(*) FROM memory_chunks WHERE memory_id = ANY(:ids)"

    # The first worker writes the list's vectors, publishes its outcomes, and dies.
    dying = StopsAfterVectors(db)
    first = memory.Ports(settings, db, CountingEmbedder(), dying, group)

    async def vectors_written() -> bool:
        return dying.written.is_set() and await scalar(db, chunks, ids=ids) == 40

    await run_until(settings, first, vectors_written, "the vectors", drain_s=0.2)
    assert await scalar(db, claimed, g=group) == 0  # nothing claimed, no offset committed
    assert [await get_memory(db, tenant_id, i) for i in ids] == [None] * 40

    # The list comes again to the next worker of the group: stored once each.
    embedder = CountingEmbedder()
    second = memory.Ports(settings, db, embedder, PgVectorStore(db, dim=384), group)

    async def all_claimed() -> bool:
        return await scalar(db, claimed, g=group) == 40

    await run_until(settings, second, all_claimed, "every remember claimed")
    assert embedder.calls <= 2, "the remembers were not embedded in lists"
    rows = [await get_memory(db, tenant_id, i) for i in ids]
    assert all(r is not None and r.status == "stored" and r.chunks == 1 for r in rows)
    assert await scalar(db, chunks, ids=ids) == 40
    # Both workers published the outcomes, under the same ids: one event each downstream.
    stored = [
        decode_raw(r.value)
        for r in await read_topic(settings, topics.MEMORY_EVENTS.name)
        if decode_raw(r.value).type == events.MEMORY_STORED
    ]
    assert len(stored) == 80 and len({e.id for e in stored}) == 40
    usage = {decode_raw(r.value).id for r in await read_topic(settings, topics.USAGE_RECORDED.name)}
    assert len(usage) == 40


async def test_a_forget_in_the_same_list_as_its_remember_wins(
    services: ServiceAddresses, db: Database, tenant: TenantKey
) -> None:
    settings = list_settings(services, "mem-forget")
    await create_topics(settings)
    tenant_id: uuid.UUID = tenant.tenant_id  # type: ignore[assignment]
    alice, bob = unique("alice-"), unique("bob-")
    kept, dropped = (
        remember(tenant_id, alice, "alice likes tea"),
        remember(tenant_id, alice, "alice's door code is 4512"),
    )
    forget = command(
        tenant_id, alice, events.MEMORY_FORGET,
        events.Forget(memory_id=dropped.payload.memory_id, user_id=alice),
    )  # fmt: skip
    bobs_old = remember(tenant_id, bob, "bob's old address")
    wipe = command(
        tenant_id, bob, events.MEMORY_FORGET_USER, events.ForgetUser(user_id=bob, before=uuid7())
    )
    bobs_new = remember(tenant_id, bob, "bob's new address")
    # Each forget right after its remember, in one list.
    await publish(settings, [kept, dropped, forget, bobs_old, wipe, bobs_new])
    group = unique("memory-")
    embedder = CountingEmbedder()
    store = PgVectorStore(db, dim=384)

    async def all_claimed() -> bool:
        sql = "SELECT count(*) FROM processed_events WHERE consumer_group = :g"
        return await scalar(db, sql, g=group) == 6

    await run_until(settings, memory.Ports(settings, db, embedder, store, group), all_claimed, "6")
    status = {
        c.payload.memory_id: (await get_memory(db, tenant_id, c.payload.memory_id)).status
        for c in (kept, dropped, bobs_old, bobs_new)
    }
    assert status == {
        kept.payload.memory_id: "stored",
        dropped.payload.memory_id: "deleted",
        bobs_old.payload.memory_id: "deleted",
        bobs_new.payload.memory_id: "stored",
    }
    gone = await get_memory(db, tenant_id, dropped.payload.memory_id)
    assert gone is not None and gone.text == ""
    assert await store.memory_ids(tenant_id, alice) == {kept.payload.memory_id}
    assert await store.memory_ids(tenant_id, bob) == {bobs_new.payload.memory_id}


async def test_one_refused_text_in_a_list_fails_only_its_memory(
    services: ServiceAddresses, db: Database, tenant: TenantKey
) -> None:
    settings = namespace_settings(services, unique("mem-refused") + ".")
    await create_topics(settings)
    tenant_id: uuid.UUID = tenant.tenant_id  # type: ignore[assignment]
    user = unique("dana-")
    good = [remember(tenant_id, user, f"dana fact {i}") for i in range(15)]
    bad = remember(tenant_id, user, "dana fact UNEMBEDDABLE")
    listed = [*good[:7], bad, *good[7:]]
    embedder = CountingEmbedder(refuse="UNEMBEDDABLE")
    store = PgVectorStore(db, dim=384)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        ports = memory.Ports(settings, db, embedder, store, unique("memory-"), publisher)
        await memory.handle_remember(listed, ports)
    finally:
        await publisher.stop()
    failed = await get_memory(db, tenant_id, bad.payload.memory_id)
    assert failed is not None and failed.status == "failed" and "refused" in (failed.error or "")
    for event in good:
        row = await get_memory(db, tenant_id, event.payload.memory_id)
        assert row is not None and row.status == "stored", row
    assert await store.memory_ids(tenant_id, user) == {e.payload.memory_id for e in good}
    assert embedder.calls <= 1 + 2 * 5  # halving: a few calls, not one per memory
    outcomes = [decode_raw(r.value) for r in await read_topic(settings, topics.MEMORY_EVENTS.name)]
    assert [e.payload["memory_id"] for e in outcomes if e.type == events.MEMORY_EMBED_FAILED] == [
        str(bad.payload.memory_id)
    ]
