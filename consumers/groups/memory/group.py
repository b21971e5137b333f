"""The memory group: chunks, embeds and stores memories; forgets them on request.

Each embedding call is billed: a `usage.recorded` (the embedding model's tokens
and cost, under an id derived from the remember) goes out with the outcome.
Every outcome of a remember is announced on `memory.events` (chunks with their
vectors, or the embedding error) before the memory row commits, under ids
derived from the remember: a replay rebuilds the store from the events alone,
without embedding again (see consumers/projections/memory.py).

Remembers come in lists (`Batches`), stored together (see remember.py): one
embedding call, one vector upsert, one publish and one transaction per list.
Idempotent by event id. Vector writes are idempotent by themselves (chunk ids
are derived from the memory id), so they happen first; the memory rows and the
claims of their events then commit together.

Order. Events of one user share a Kafka key, but the runner hands a list over
one event type at a time (and retries a failed list's events each alone, side
by side), so a forget can be handled before the remember it follows. The
outcome does not depend on that order: a forget leaves a tombstone (a deleted
row, or a user's cut-off id) that never goes away, and a remember checks for it
under the user's lock in the transaction that claims it; one forgotten there is
erased, and its vectors go again after the commit. A forget handled after the
remember deletes the vectors and tombstones the row itself. Either way the
memory ends deleted with no vectors; a remember later than a user's wipe has a
larger id than its cut-off, and stays.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from consumers.groups.memory.remember import announce, outcome, remember_all, row_outcome
from infra.db import memories as rows
from infra.db.engine import Database
from infra.embeddings.base import Embedder
from infra.kafka.group import Group
from infra.kafka.policies import Batches
from infra.kafka.publisher import Publisher
from infra.pricing import PriceTable
from infra.settings import Settings
from infra.vectors.base import VectorStore
from schemas import memory as memory_events
from schemas import topics
from schemas.envelope import Actor, Envelope

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
    "memory",
    [topics.MEMORY_COMMANDS.name],
    lambda settings: Batches(settings.memory_batch_events, settings.memory_batch_age_s),
)


@group.on(memory_events.MEMORY_REMEMBER, memory_events.Remember, batch=True)
async def handle_remember(events: list[Envelope[memory_events.Remember]], ports: Ports) -> None:
    await remember_all(events, ports)


async def _fail_remember(
    raw: Envelope[Any], cmd: memory_events.Remember, error: str, ports: Ports
) -> None:
    failed = memory_events.EmbedFailed(memory_id=cmd.memory_id, user_id=cmd.user_id, error=error)
    await announce(
        ports,
        [
            (
                topics.MEMORY_EVENTS.name,
                outcome(raw, memory_events.MEMORY_EMBED_FAILED, failed, "embed-failed"),
            )
        ],
    )
    await rows.settle_remembers(ports.db, ports.group, [row_outcome(raw, error=error)])


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


@group.gives_up(memory_events.MEMORY_REMEMBER)
async def remember_given_up(
    raw: Envelope[memory_events.Remember], reason: str, ports: Ports
) -> None:
    cmd = raw.payload
    # Vectors stored before the failure go: a failed memory is never recalled.
    await ports.store.delete(raw.tenant_id, cmd.user_id, [cmd.memory_id])
    await _fail_remember(raw, cmd, reason, ports)
