"""The memory-projection group: memories and their chunks, rebuilt from events alone.

| topic           | event type           | handler        |
|-----------------|----------------------|----------------|
| memory.commands | memory.remember      | on_remember    |
| memory.commands | memory.forget        | handle_forget  |
| memory.commands | memory.forget_user   | handle_forget_user |
| memory.events   | memory.stored        | on_stored      |
| memory.events   | memory.embed_failed  | on_embed_failed |

Runs only in replay (`ayush replay --into-group memory-projection`): live, the
ingress and the memory group write these rows. It never embeds: the vectors
come from `memory.stored`, as the memory group stored them, into the pgvector
store of the database being rebuilt. Forgets go through the memory group's
own handlers. Idempotent by event id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumers.memory import Ports as MemoryPorts
from consumers.memory import handle_forget, handle_forget_user
from infra.db import memories as rows
from infra.db.engine import Database
from infra.db.idempotency import is_processed
from infra.errors import PermanentError
from infra.kafka.routes import Route
from infra.settings import Settings
from infra.vectors.base import Chunk
from infra.vectors.pgvector import PgVectorStore
from schemas import memory as ev
from schemas import topics
from schemas.envelope import RawEnvelope

GROUP = "memory-projection"
TOPICS = [topics.MEMORY_COMMANDS.name, topics.MEMORY_EVENTS.name]


class NoEmbedder:
    """The projection's embedder: replay takes vectors from events, so embedding is a bug."""

    model = "none"
    dim = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise PermanentError("a replay never embeds: vectors come from memory.stored")


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database

    def memory(self) -> MemoryPorts:
        store = PgVectorStore(self.db, dim=self.settings.memory_embedding_dim)
        return MemoryPorts(self.settings, self.db, NoEmbedder(), store, group=GROUP)


def handlers(ports: Ports) -> Mapping[str, Route]:
    memory = ports.memory()

    async def on_remember(raw: RawEnvelope) -> None:
        # Live, the ingress writes the pending row when it accepts the memory.
        cmd = ev.Remember.model_validate(raw.payload)
        await rows.insert_pending(
            ports.db, raw.tenant_id, cmd.memory_id, cmd.user_id, cmd.text, cmd.metadata
        )

    async def on_stored(raw: RawEnvelope) -> None:
        await handle_stored(raw, memory)

    async def on_embed_failed(raw: RawEnvelope) -> None:
        failed = ev.EmbedFailed.model_validate(raw.payload)
        row = await _remembered(memory, raw, failed.memory_id)
        await rows.fail_remember(
            ports.db, GROUP, raw.id, raw.tenant_id, row.id, row.user_id, row.text,
            row.metadata, failed.error,
        )  # fmt: skip

    async def on_forget(raw: RawEnvelope) -> None:
        await handle_forget(raw, memory)

    async def on_forget_user(raw: RawEnvelope) -> None:
        await handle_forget_user(raw, memory)

    return {
        ev.MEMORY_REMEMBER: Route(on_remember),
        ev.MEMORY_FORGET: Route(on_forget),
        ev.MEMORY_FORGET_USER: Route(on_forget_user),
        ev.MEMORY_STORED: Route(on_stored),
        ev.MEMORY_EMBED_FAILED: Route(on_embed_failed),
    }


async def handle_stored(raw: RawEnvelope, memory: MemoryPorts) -> None:
    """What the memory group's remember does after embedding, with the event's vectors."""
    stored = ev.Stored.model_validate(raw.payload)
    if await is_processed(memory.db, GROUP, raw.id):
        return
    row = await _remembered(memory, raw, stored.memory_id)
    tenant, user = raw.tenant_id, stored.user_id
    chunks = [
        Chunk(stored.memory_id, tenant, user, stored.first_chunk + i, text, stored.model,
              ev.unpack_vector(vector), row.metadata)
        for i, (text, vector) in enumerate(zip(stored.texts, stored.vectors, strict=True))
    ]  # fmt: skip
    if stored.replace and stored.first_chunk == 0:
        await memory.store.delete(tenant, user, [stored.memory_id])
    await memory.store.upsert(chunks)
    kept = await rows.finish_remember(
        memory.db, GROUP, raw.id, tenant, row.id, row.user_id, row.text, row.metadata,
        chunks=stored.chunks, model=stored.model, dim=stored.dim,
    )  # fmt: skip
    if not kept:
        await memory.store.delete(tenant, user, [stored.memory_id])


async def _remembered(memory: MemoryPorts, raw: RawEnvelope, memory_id: object) -> rows.MemoryRow:
    row = await rows.get_memory(memory.db, raw.tenant_id, memory_id)  # type: ignore[arg-type]
    if row is None:
        raise PermanentError(f"{raw.type} {raw.id}: its memory.remember is not in the replay")
    return row
