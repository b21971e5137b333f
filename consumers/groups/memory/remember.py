"""A list of remembers, stored together: the memory group's hot path.

Per list, whatever its length: one idempotency look-up, one tombstone look-up, one
embedding call per part of `_PART` remembers (all their chunks), one vector upsert and
one publish of every outcome per part (beside the next part's embedding, so the model
is the bound, not the writes), and one transaction that writes every memory row with
the claims of their events. The guarantees are those of a single remember:

- vectors first, and beside them the outcomes (`memory.stored` parts,
  `memory.embed_failed`, `usage.recorded`): the vectors are idempotent (chunk ids derive
  from the memory id), the outcomes have ids derived from each remember, so a redo
  rewrites the same chunks and publishes the same events;
- then the rows and the claims commit together: a crash anywhere before that redoes the
  list (already claimed events are skipped), never twice;
- a memory forgotten meanwhile (a tombstone, or its user's wipe) is erased in that same
  transaction under its user's lock, and its vectors go again after it.

An embedding refused for one text (`PermanentError`) fails only its memory: the list's
chunks are embedded again in halves until the refused memories are found.
"""

from __future__ import annotations

import array
import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from consumers.groups.memory.chunks import split
from infra.db import memories as rows
from infra.db.idempotency import processed_among
from infra.embeddings.base import Embedder
from infra.embeddings.metering import embedding_usage
from infra.errors import PermanentError
from infra.vectors.base import Chunk
from schemas import memory as memory_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.jobs import USAGE_RECORDED
from schemas.versions import follow_up

if TYPE_CHECKING:
    from consumers.groups.memory.group import Ports

SYSTEM = Actor(kind="system", id="memory")
Remember = Envelope[memory_events.Remember]
# Memories embedded in one call; a list's parts are embedded one after the other, each
# part's writes beside the next one's embedding.
_PART = 250
# Vectors, or why the embedder refused them.
Embedded = list[list[float]] | PermanentError


@dataclass
class _Work:
    raw: Remember
    pieces: list[str]
    chunks: list[Chunk] | None = None
    error: str | None = None


async def remember_all(events: Sequence[Remember], ports: Ports) -> None:
    """Store every remember of the list that is not done yet (see the module's docstring)."""
    todo = list({e.id: e for e in events}.values())  # a list may hold a copy redelivered
    done = await processed_among(ports.db, ports.group, [e.id for e in todo])
    todo = [e for e in todo if e.id not in done]
    if not todo:
        return
    gone = await rows.forgotten_among(ports.db, [row_outcome(e) for e in todo])
    settings = ports.settings
    work = [
        _Work(e, split(e.payload.text, settings.memory_chunk_chars, settings.memory_chunk_overlap))
        for e in todo
        if e.payload.memory_id not in gone  # forgotten already: nothing to embed or store
    ]
    # Embedded part by part, each part's writes beside the next part's embedding (a
    # model's pass on the CPU, the writes on Postgres and Kafka), one part's at a time.
    # A part's writes wait for the part before: awaiting the last awaits them all, and
    # raises the first failure as it was raised (retried if transient).
    previous: asyncio.Task[None] | None = None
    try:
        for start in range(0, len(work), _PART):
            part = work[start : start + _PART]
            await _embed(ports, part)
            previous = asyncio.create_task(_write(ports, part, previous))
        if previous is not None:
            await previous
    except BaseException:
        if previous is not None:  # cancelling the last cancels those it waits for
            previous.cancel()
            await asyncio.gather(previous, return_exceptions=True)
        raise
    embedder = ports.embedder
    settled = [
        row_outcome(w.raw, len(w.chunks), embedder) if w.chunks is not None
        else row_outcome(w.raw, error=w.error or "")
        for w in work
    ]  # fmt: skip
    settled += [row_outcome(e) for e in todo if e.payload.memory_id in gone]
    forgotten = await rows.settle_remembers(ports.db, ports.group, settled)
    again = [w for w in work if w.chunks is not None and w.raw.payload.memory_id in forgotten]
    await _delete(ports, [(w.raw, w.raw.payload.memory_id) for w in again])


async def _embed(ports: Ports, part: list[_Work]) -> None:
    embedder = ports.embedder
    for item, embedded in zip(
        part, await embed_each(embedder, [w.pieces for w in part]), strict=True
    ):
        if isinstance(embedded, PermanentError):
            item.error = str(embedded)
        else:
            item.chunks = _chunks(item.raw, item.pieces, embedded, embedder.model)


async def _write(ports: Ports, part: list[_Work], after: asyncio.Task[None] | None) -> None:
    """A part's vectors and outcomes, once the part before has written its own."""
    if after is not None:
        await after
    stored = [w for w in part if w.chunks is not None]
    # The old model's chunks may outnumber the new ones: a reembed drops them all first.
    await _delete(ports, [(w.raw, w.raw.payload.memory_id) for w in stored if _replaces(w.raw)])
    # Side by side (one waits on Postgres, the other on Kafka), both before the claims: a
    # crash before the claims rewrites the same chunks and re-publishes the same ids.
    await asyncio.gather(
        ports.store.upsert([c for w in stored for c in w.chunks or ()]),
        announce(ports, [item for w in part for item in _announced(ports, w)]),
    )


def _announced(ports: Ports, w: _Work) -> list[tuple[str, Envelope[Any]]]:
    """What one remember's outcome publishes: its chunks and its usage, or its failure."""
    cmd, embedder = w.raw.payload, ports.embedder
    if w.chunks is None:
        failed = memory_events.EmbedFailed(
            memory_id=cmd.memory_id, user_id=cmd.user_id, error=w.error or ""
        )
        event = outcome(w.raw, memory_events.MEMORY_EMBED_FAILED, failed, "embed-failed")
        return [(topics.MEMORY_EVENTS.name, event)]
    usage = embedding_usage(
        cmd.memory_id,
        w.pieces,
        purpose="remember",
        provider=ports.settings.memory_embedder,
        model=embedder.model,
        prices=ports.prices,
        api_key_id=cmd.api_key_id,
        user_id=cmd.user_id,
    )
    return [
        *((topics.MEMORY_EVENTS.name, e)
          for e in stored_events(w.raw, cmd, w.chunks, embedder, _replaces(w.raw))),
        (topics.USAGE_RECORDED.name, outcome(w.raw, USAGE_RECORDED, usage, "usage")),
    ]  # fmt: skip


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
        events.append(outcome(raw, memory_events.MEMORY_STORED, stored, f"stored:{n}"))
    return events


def outcome(raw: Envelope[Any], type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    # In the command's correlation, the user's key: in order with their commands.
    return follow_up(raw, type_, payload, purpose, SYSTEM)


async def announce(ports: Ports, items: list[tuple[str, Envelope[Any]]]) -> None:
    """Publish (topic, event) pairs in one go; nowhere when nothing replays them."""
    if ports.publisher is not None and items:
        await ports.publisher.publish_many(items)


async def embed_each(embedder: Embedder, texts: Sequence[list[str]]) -> list[Embedded]:
    """The vectors of each memory's chunks, in one call for all of them while the embedder
    takes them; a refused call is split in halves until the refused memories are found."""
    flat = [piece for pieces in texts for piece in pieces]
    if not flat:
        return [[] for _ in texts]
    try:
        vectors = await embedder.embed(flat)
    except PermanentError as exc:
        if len(texts) == 1:
            return [exc]
        half = len(texts) // 2
        return [
            *await embed_each(embedder, texts[:half]),
            *await embed_each(embedder, texts[half:]),
        ]
    if len(vectors) != len(flat):
        raise PermanentError(f"{embedder.model}: {len(vectors)} vectors for {len(flat)} texts")
    found: list[Embedded] = []
    start = 0
    for pieces in texts:
        found.append(vectors[start : start + len(pieces)])
        start += len(pieces)
    return found


def _chunks(
    raw: Remember, pieces: list[str], vectors: list[list[float]], model: str
) -> list[Chunk]:
    cmd = raw.payload
    # Stored as float32, as the events carry them: the live store and a rebuild agree
    # exactly (`array("f")` rounds as `memory_events.as_float32` does, and is cheap to
    # pack and to write).
    return [
        Chunk(cmd.memory_id, raw.tenant_id, cmd.user_id, i, piece, model,
              array.array("f", vector), cmd.metadata)
        for i, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
    ]  # fmt: skip


def _replaces(raw: Remember) -> bool:
    return raw.payload.source == "reembed"


def row_outcome(
    raw: Remember, chunks: int = 0, embedder: Embedder | None = None, error: str | None = None
) -> rows.Outcome:
    cmd = raw.payload
    return rows.Outcome(
        raw.id,
        raw.tenant_id,
        cmd.memory_id,
        cmd.user_id,
        cmd.text,
        cmd.metadata,
        chunks=chunks,
        model=embedder.model if embedder is not None else None,
        dim=embedder.dim if embedder is not None else None,
        error=error,
    )


async def _delete(ports: Ports, memories: list[tuple[Remember, uuid.UUID]]) -> None:
    """Every chunk of these memories, a call per user."""
    by_user: dict[tuple[uuid.UUID, str], list[uuid.UUID]] = defaultdict(list)
    for raw, memory_id in memories:
        by_user[(raw.tenant_id, raw.payload.user_id)].append(memory_id)
    for (tenant, user), ids in by_user.items():
        await ports.store.delete(tenant, user, ids)
