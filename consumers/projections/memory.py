"""The memory-projection group: memories and their chunks, rebuilt from events alone.

Runs only in replay (`ayush replay --into-group memory-projection`): live, the
ingress and the memory group write these rows. It never embeds: the vectors
come from `memory.stored`, as the memory group stored them, into the pgvector
store of the database being rebuilt. Forgets go through the memory group's
own handlers. Idempotent by event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumers.groups.memory.group import Ports as MemoryPorts
from consumers.groups.memory.group import handle_forget, handle_forget_user
from infra.db import memories as rows
from infra.db.engine import Database
from infra.db.idempotency import is_processed
from infra.errors import PermanentError
from infra.kafka.group import Group
from infra.settings import Settings
from infra.vectors.base import Chunk
from infra.vectors.pgvector import PgVectorStore
from schemas import memory as memory_events
from schemas import topics
from schemas.envelope import Envelope


class NoEmbedder:
    """The projection's embedder: replay takes vectors from events, so embedding is a bug."""

    model = "none"
    dim = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise PermanentError("a replay never embeds: vectors come from memory.stored")


group: Group[MemoryPorts] = Group(
    "memory-projection", [topics.MEMORY_COMMANDS.name, topics.MEMORY_EVENTS.name], replay_only=True
)
group.on(memory_events.MEMORY_FORGET, memory_events.Forget)(handle_forget)
group.on(memory_events.MEMORY_FORGET_USER, memory_events.ForgetUser)(handle_forget_user)


def projection_ports(settings: Settings, db: Database) -> MemoryPorts:
    """The memory group's ports over the database being rebuilt, with no embedder."""
    store = PgVectorStore(
        db, dim=settings.memory_embedding_dim, graph_after=settings.memory_graph_after
    )
    return MemoryPorts(settings, db, NoEmbedder(), store, group=group.name)


@group.on(memory_events.MEMORY_REMEMBER, memory_events.Remember)
async def on_remember(raw: Envelope[memory_events.Remember], memory: MemoryPorts) -> None:
    # Live, the ingress writes the pending row when it accepts the memory.
    cmd = raw.payload
    await rows.insert_pending(
        memory.db, raw.tenant_id, cmd.memory_id, cmd.user_id, cmd.text, cmd.metadata
    )


@group.on(memory_events.MEMORY_EMBED_FAILED, memory_events.EmbedFailed)
async def on_embed_failed(raw: Envelope[memory_events.EmbedFailed], memory: MemoryPorts) -> None:
    failed = raw.payload
    row = await _remembered(memory, raw, failed.memory_id)
    await rows.fail_remember(
        memory.db,
        group.name,
        raw.id,
        raw.tenant_id,
        row.id,
        row.user_id,
        row.text,
        row.metadata,
        failed.error,
    )


@group.on(memory_events.MEMORY_STORED, memory_events.Stored)
async def handle_stored(raw: Envelope[memory_events.Stored], memory: MemoryPorts) -> None:
    """What the memory group's remember does after embedding, with the event's vectors."""
    stored = raw.payload
    if await is_processed(memory.db, group.name, raw.id):
        return
    row = await _remembered(memory, raw, stored.memory_id)
    tenant, user = raw.tenant_id, stored.user_id
    chunks = [
        Chunk(
            stored.memory_id,
            tenant,
            user,
            stored.first_chunk + i,
            text,
            stored.model,
            memory_events.unpack_vector(vector),
            row.metadata,
        )
        for i, (text, vector) in enumerate(zip(stored.texts, stored.vectors, strict=True))
    ]
    if stored.replace and stored.first_chunk == 0:
        await memory.store.delete(tenant, user, [stored.memory_id])
    await memory.store.upsert(chunks)
    kept = await rows.finish_remember(
        memory.db,
        group.name,
        raw.id,
        tenant,
        row.id,
        row.user_id,
        row.text,
        row.metadata,
        chunks=stored.chunks,
        model=stored.model,
        dim=stored.dim,
    )
    if not kept:
        await memory.store.delete(tenant, user, [stored.memory_id])


async def _remembered(memory: MemoryPorts, raw: Envelope[Any], memory_id: object) -> rows.MemoryRow:
    row = await rows.get_memory(memory.db, raw.tenant_id, memory_id)  # type: ignore[arg-type]
    if row is None:
        raise PermanentError(f"{raw.type} {raw.id}: its memory.remember is not in the replay")
    return row
