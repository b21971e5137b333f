"""The memory group: chunks, embeds and stores memories; forgets them on request.

Each embedding call is billed: a `usage.recorded` (the embedding model's tokens
and cost, under an id derived from the remember) goes out with the outcome.
Every outcome of a remember is announced on `memory.events` (chunks with their
vectors, or the embedding error) before the memory row commits, under ids
derived from the remember: a replay rebuilds the store from the events alone,
without embedding again (see consumers/projections/memory.py).

Idempotent by event id. Vector writes are idempotent by themselves (chunk ids
are derived from the memory id), so they happen first; the memory row and the
claim of the event then commit together. Events of one user share a Kafka key,
but the runner handles several at once, so a forget can overtake the remember
it follows: forgets leave tombstones that a late remember checks, and then
removes its own vectors again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from consumers.groups.memory.chunks import split
from infra.db import memories as rows
from infra.db.engine import Database
from infra.db.idempotency import is_processed
from infra.embeddings.base import Embedder
from infra.embeddings.metering import embedding_usage
from infra.errors import PermanentError
from infra.kafka.group import Group
from infra.kafka.policies import Each
from infra.kafka.publisher import Publisher
from infra.pricing import PriceTable
from infra.settings import Settings
from infra.vectors.base import Chunk, VectorStore
from schemas import memory as memory_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.jobs import USAGE_RECORDED
from schemas.versions import follow_up

SYSTEM = Actor(kind="system", id="memory")


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    embedder: Embedder
    store: VectorStore
    group: str = "memory"  # the idempotency namespace; a replay into a fresh store uses its own
    # where outcomes are announced; None only where nothing replays them (a test's store)
    publisher: Publisher | None = None
    # what each embedding costs: every remember's embedding call is a `usage.recorded`
    # The shipped table unless told otherwise: never an empty one that prices nothing.
    prices: PriceTable = field(default_factory=PriceTable.load)


group: Group[Ports] = Group(
    "memory", [topics.MEMORY_COMMANDS.name], lambda settings: Each(settings.memory_concurrency)
)


@group.on(memory_events.MEMORY_REMEMBER, memory_events.Remember)
async def handle_remember(raw: Envelope[memory_events.Remember], ports: Ports) -> None:
    cmd = raw.payload
    if await is_processed(ports.db, ports.group, raw.id):
        return  # its vectors, row and any clean-up are done
    tenant = raw.tenant_id
    pieces = split(cmd.text, ports.settings.memory_chunk_chars, ports.settings.memory_chunk_overlap)
    embedder = ports.embedder
    try:
        vectors = await embedder.embed(pieces)
    except PermanentError as exc:
        await _fail_remember(raw, cmd, str(exc), ports)
        return
    # Stored as float32, as the events carry them: the live store and a rebuild agree exactly.
    vectors = [memory_events.as_float32(v) for v in vectors]
    chunks = [
        Chunk(cmd.memory_id, tenant, cmd.user_id, i, piece, embedder.model, vector, cmd.metadata)
        for i, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
    ]
    replace = cmd.source == "reembed"
    if replace:
        # The old model's chunks may outnumber the new ones: drop them all first.
        await ports.store.delete(tenant, cmd.user_id, [cmd.memory_id])
    await ports.store.upsert(chunks)
    # Before the claim: a crash in between re-publishes under the same ids.
    usage = embedding_usage(
        cmd.memory_id,
        pieces,
        purpose="remember",
        provider=ports.settings.memory_embedder,
        model=embedder.model,
        prices=ports.prices,
        api_key_id=cmd.api_key_id,
        user_id=cmd.user_id,
    )
    await _announce(
        ports,
        stored_events(raw, cmd, chunks, embedder, replace),
        _outcome(raw, USAGE_RECORDED, usage, "usage"),
    )
    kept = await rows.finish_remember(
        ports.db,
        ports.group,
        raw.id,
        tenant,
        cmd.memory_id,
        cmd.user_id,
        cmd.text,
        cmd.metadata,
        chunks=len(chunks),
        model=embedder.model,
        dim=embedder.dim,
    )
    if not kept:
        await ports.store.delete(tenant, cmd.user_id, [cmd.memory_id])


async def _fail_remember(
    raw: Envelope[Any], cmd: memory_events.Remember, error: str, ports: Ports
) -> None:
    failed = memory_events.EmbedFailed(memory_id=cmd.memory_id, user_id=cmd.user_id, error=error)
    await _announce(
        ports, [_outcome(raw, memory_events.MEMORY_EMBED_FAILED, failed, "embed-failed")]
    )
    await rows.fail_remember(
        ports.db,
        ports.group,
        raw.id,
        raw.tenant_id,
        cmd.memory_id,
        cmd.user_id,
        cmd.text,
        cmd.metadata,
        error,
    )


@group.on(memory_events.MEMORY_FORGET, memory_events.Forget)
async def handle_forget(raw: Envelope[memory_events.Forget], ports: Ports) -> None:
    cmd = raw.payload
    # Vectors go first, so search stops finding the memory before its row says
    # it is gone; then the tombstone; then again, for a remember that stored
    # its vectors in between (one finishing later sees the tombstone itself).
    await ports.store.delete(raw.tenant_id, cmd.user_id, [cmd.memory_id])
    await rows.forget(ports.db, ports.group, raw.id, raw.tenant_id, cmd.memory_id, cmd.user_id)
    await ports.store.delete(raw.tenant_id, cmd.user_id, [cmd.memory_id])


@group.on(memory_events.MEMORY_FORGET_USER, memory_events.ForgetUser)
async def handle_forget_user(raw: Envelope[memory_events.ForgetUser], ports: Ports) -> None:
    cmd = raw.payload
    tenant, user = raw.tenant_id, cmd.user_id
    # The same order as a single forget: vectors, tombstones, vectors again.
    await _delete(ports, raw, user, await rows.live_ids_before(ports.db, tenant, user, cmd.before))
    forgotten = await rows.forget_user(ports.db, ports.group, raw.id, tenant, user, cmd.before)
    await _delete(ports, raw, user, forgotten)


async def _delete(ports: Ports, raw: Envelope[Any], user_id: str, ids: list[uuid.UUID]) -> None:
    for start in range(0, len(ids), 500):
        await ports.store.delete(raw.tenant_id, user_id, ids[start : start + 500])


def stored_events(
    raw: Envelope[Any],
    cmd: memory_events.Remember,
    chunks: Sequence[Chunk],
    embedder: Embedder,
    replace: bool,
) -> list[Envelope[Any]]:
    """The chunks and vectors of one remember, in parts that fit a Kafka message."""
    size = memory_events.STORED_CHUNKS_PER_EVENT
    parts = [chunks[i : i + size] for i in range(0, len(chunks), size)] or [[]]
    events = []
    for n, part in enumerate(parts):
        stored = memory_events.Stored(
            memory_id=cmd.memory_id,
            user_id=cmd.user_id,
            model=embedder.model,
            dim=embedder.dim,
            chunks=len(chunks),
            first_chunk=n * size,
            texts=[c.text for c in part],
            vectors=[memory_events.pack_vector(c.vector) for c in part],
            replace=replace,
        )
        events.append(_outcome(raw, memory_events.MEMORY_STORED, stored, f"stored:{n}"))
    return events


def _outcome(raw: Envelope[Any], type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    # In the command's correlation, the user's key: in order with their commands.
    return follow_up(raw, type_, payload, purpose, SYSTEM)


async def _announce(
    ports: Ports, events: list[Envelope[Any]], usage: Envelope[Any] | None = None
) -> None:
    if ports.publisher is None:
        return
    items = [(topics.MEMORY_EVENTS.name, e) for e in events]
    if usage is not None:
        items.append((topics.USAGE_RECORDED.name, usage))
    if items:
        await ports.publisher.publish_many(items)


@group.gives_up(memory_events.MEMORY_REMEMBER)
async def remember_given_up(
    raw: Envelope[memory_events.Remember], reason: str, ports: Ports
) -> None:
    cmd = raw.payload
    # Vectors stored before the failure go: a failed memory is never recalled.
    await ports.store.delete(raw.tenant_id, cmd.user_id, [cmd.memory_id])
    await _fail_remember(raw, cmd, reason, ports)
