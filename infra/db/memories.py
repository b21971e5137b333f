"""Memory rows: what the API lists and reports, projected from the memory events.

The vectors live in the vector store; these rows say which memories exist, their
status and which embedding model made their vectors. Deletes leave a row with
status `deleted` and no text (a tombstone: forgetting erases the text too), and
a user wipe leaves a cut-off id, so an older remember that finishes late can
see it was forgotten meanwhile.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db.engine import Database
from infra.db.idempotency import claim

# A forgotten memory keeps its id and owner only.
_ERASE = "status = 'deleted', text = '', metadata = '{}', chunks = 0, error = NULL"

_FIELDS = (
    "id, user_id, text, metadata, status, error, chunks, embedding_model, embedding_dim, "
    "created_at, stored_at"
)


@dataclass(frozen=True)
class MemoryRow:
    id: uuid.UUID
    user_id: str
    text: str
    metadata: dict[str, str]
    status: str
    error: str | None
    chunks: int
    embedding_model: str | None
    embedding_dim: int | None
    created_at: datetime
    stored_at: datetime | None


def _row(found: Any) -> MemoryRow:
    metadata = found[3] if isinstance(found[3], dict) else json.loads(found[3])
    return MemoryRow(found[0], found[1], found[2], metadata, *found[4:])


async def insert_pending(
    db: Database,
    tenant_id: uuid.UUID,
    memory_id: uuid.UUID,
    user_id: str,
    body: str,
    metadata: dict[str, str],
) -> None:
    async with db.transaction() as session:
        await _upsert(session, tenant_id, memory_id, user_id, body, metadata, "pending")


async def delete_pending(db: Database, memory_id: uuid.UUID) -> None:
    """Undo `insert_pending` when the event log refused the remember event."""
    async with db.transaction() as session:
        await session.execute(
            text("DELETE FROM memories WHERE id = :id AND status = 'pending'"), {"id": memory_id}
        )


async def _upsert(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    memory_id: uuid.UUID,
    user_id: str,
    body: str,
    metadata: dict[str, str],
    status: str,
) -> None:
    await session.execute(
        text(
            "INSERT INTO memories (id, tenant_id, user_id, text, metadata, status) "
            "VALUES (:id, :t, :u, :text, CAST(:m AS jsonb), :status) ON CONFLICT (id) DO NOTHING"
        ),
        {
            "id": memory_id,
            "t": tenant_id,
            "u": user_id,
            "text": body,
            "m": json.dumps(metadata),
            "status": status,
        },
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one remember of a list: stored (`error` None) or failed."""

    event_id: uuid.UUID
    tenant_id: uuid.UUID
    memory_id: uuid.UUID
    user_id: str
    text: str
    metadata: dict[str, str]
    chunks: int = 0
    model: str | None = None
    dim: int | None = None
    error: str | None = None


# The memories of these (id, tenant, user) triples that were forgotten: tombstoned one by
# one, or older than their user's wipe.
_FORGOTTEN = (
    "SELECT id FROM memories WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'deleted' "
    "UNION SELECT r.id FROM unnest(CAST(:ids AS uuid[]), CAST(:t AS uuid[]), "
    "CAST(:u AS text[])) AS r(id, t, u) JOIN memory_user_forgets f "
    "ON f.tenant_id = r.t AND f.user_id = r.u AND f.before > r.id"
)


def _triples(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    return {
        "ids": [o.memory_id for o in outcomes],
        "t": [o.tenant_id for o in outcomes],
        "u": [o.user_id for o in outcomes],
    }


async def forgotten_among(db: Database, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
    """The memories among these that are forgotten already: not worth embedding."""
    if not outcomes:
        return set()
    async with db.session() as session:
        return {row[0] for row in await session.execute(text(_FORGOTTEN), _triples(outcomes))}


async def settle_remembers(db: Database, group: str, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
    """What became of a list of remembers, in one transaction: the rows, their claims,
    and the tombstone check of each (one remember is a list of one: `finish_remember`,
    `fail_remember`). Returns the memories that were forgotten meanwhile (their vectors
    are to go again)."""
    if not outcomes:
        return set()
    async with db.transaction() as session:
        keys = sorted({f"memory:{o.tenant_id}:{o.user_id}" for o in outcomes})
        await session.execute(  # each user's lock, in one order: no deadlock between lists
            text(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                "FROM unnest(CAST(:keys AS text[])) AS l(k)"
            ),
            {"keys": keys},
        )
        await session.execute(
            text(
                "INSERT INTO memories (id, tenant_id, user_id, text, metadata, status) "
                "SELECT id, t, u, body, CAST(m AS jsonb), 'pending' FROM unnest("
                "CAST(:ids AS uuid[]), CAST(:t AS uuid[]), CAST(:u AS text[]), "
                "CAST(:body AS text[]), CAST(:m AS text[])) AS r(id, t, u, body, m) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            {
                **_triples(outcomes),
                "body": [o.text for o in outcomes],
                "m": [json.dumps(o.metadata) for o in outcomes],
            },
        )
        forgotten = {row[0] for row in await session.execute(text(_FORGOTTEN), _triples(outcomes))}
        claimed = {
            row[0]
            for row in await session.execute(
                text(
                    "INSERT INTO processed_events (consumer_group, event_id, processed_at) "
                    "SELECT :g, e, now() FROM unnest(CAST(:events AS uuid[])) AS r(e) "
                    "ON CONFLICT DO NOTHING RETURNING event_id"
                ),
                {"g": group, "events": sorted({o.event_id for o in outcomes})},
            )
        }
        if forgotten:
            await session.execute(
                text(f"UPDATE memories SET {_ERASE} WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": list(forgotten)},
            )
        stored = [o for o in outcomes if o.error is None and o.memory_id not in forgotten]
        if stored:
            await session.execute(
                text(
                    "UPDATE memories AS m SET status = 'stored', error = NULL, chunks = r.n, "
                    "embedding_model = r.model, embedding_dim = r.dim, stored_at = now() "
                    "FROM unnest(CAST(:ids AS uuid[]), CAST(:t AS uuid[]), CAST(:n AS int[]), "
                    "CAST(:model AS text[]), CAST(:dim AS int[])) AS r(id, t, n, model, dim) "
                    "WHERE m.id = r.id AND m.tenant_id = r.t"
                ),
                {
                    "ids": [o.memory_id for o in stored],
                    "t": [o.tenant_id for o in stored],
                    "n": [o.chunks for o in stored],
                    "model": [o.model for o in stored],
                    "dim": [o.dim for o in stored],
                },
            )
        # A failed remember changes its row only when this list claimed it (as fail_remember).
        failed = [
            o
            for o in outcomes
            if o.error is not None and o.event_id in claimed and o.memory_id not in forgotten
        ]
        if failed:
            await session.execute(
                text(
                    "UPDATE memories AS m SET status = 'failed', error = r.error "
                    "FROM unnest(CAST(:ids AS uuid[]), CAST(:errors AS text[])) AS r(id, error) "
                    "WHERE m.id = r.id AND m.status <> 'deleted'"
                ),
                {
                    "ids": [o.memory_id for o in failed],
                    "errors": [(o.error or "")[:4000] for o in failed],
                },
            )
    return forgotten


async def finish_remember(
    db: Database,
    group: str,
    event_id: uuid.UUID,
    tenant_id: uuid.UUID,
    memory_id: uuid.UUID,
    user_id: str,
    body: str,
    metadata: dict[str, str],
    *,
    chunks: int,
    model: str,
    dim: int,
) -> bool:
    """Mark the memory stored and claim the event. False: it was forgotten meanwhile."""
    outcome = Outcome(
        event_id, tenant_id, memory_id, user_id, body, metadata, chunks=chunks, model=model, dim=dim
    )
    return memory_id not in await settle_remembers(db, group, [outcome])


async def fail_remember(
    db: Database,
    group: str,
    event_id: uuid.UUID,
    tenant_id: uuid.UUID,
    memory_id: uuid.UUID,
    user_id: str,
    body: str,
    metadata: dict[str, str],
    error: str,
) -> None:
    """Mark the memory failed (once: only the claim of its event changes the row)."""
    outcome = Outcome(event_id, tenant_id, memory_id, user_id, body, metadata, error=error)
    await settle_remembers(db, group, [outcome])


async def _lock_user(session: AsyncSession, tenant_id: uuid.UUID, user_id: str) -> None:
    """Serialize one user's remember/forget transactions until commit.

    Without it a user wipe and a remember running at once can each miss the
    other (neither sees the other's uncommitted row) and the memory survives.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"memory:{tenant_id}:{user_id}"},
    )


async def forget(
    db: Database,
    group: str,
    event_id: uuid.UUID,
    tenant_id: uuid.UUID,
    memory_id: uuid.UUID,
    user_id: str,
) -> None:
    """Tombstone the memory (a row is created if its remember has not arrived yet)."""
    async with db.transaction() as session:
        await _lock_user(session, tenant_id, user_id)
        if not await claim(session, group, event_id):
            return
        await _upsert(session, tenant_id, memory_id, user_id, "", {}, "deleted")
        await session.execute(
            text(f"UPDATE memories SET {_ERASE} WHERE id = :id AND tenant_id = :t"),
            {"id": memory_id, "t": tenant_id},
        )


async def forget_user(
    db: Database,
    group: str,
    event_id: uuid.UUID,
    tenant_id: uuid.UUID,
    user_id: str,
    before: uuid.UUID,
) -> list[uuid.UUID]:
    """Tombstone the user's memories older than `before`; their ids, to delete vectors of."""
    async with db.transaction() as session:
        await _lock_user(session, tenant_id, user_id)
        await claim(session, group, event_id)
        await session.execute(
            text(
                "INSERT INTO memory_user_forgets (tenant_id, user_id, before) "
                "VALUES (:t, :u, :b) ON CONFLICT (tenant_id, user_id) DO UPDATE "
                "SET before = GREATEST(memory_user_forgets.before, EXCLUDED.before)"
            ),
            {"t": tenant_id, "u": user_id, "b": before},
        )
        rows = await session.execute(
            text(
                f"UPDATE memories SET {_ERASE} WHERE tenant_id = :t AND user_id = :u "
                "AND id < :b RETURNING id"
            ),
            {"t": tenant_id, "u": user_id, "b": before},
        )
        return [row[0] for row in rows]


async def get_memory(db: Database, tenant_id: uuid.UUID, memory_id: uuid.UUID) -> MemoryRow | None:
    async with db.tenant_reads(tenant_id) as session:
        found = (
            await session.execute(
                text(f"SELECT {_FIELDS} FROM memories WHERE id = :id AND tenant_id = :t"),
                {"id": memory_id, "t": tenant_id},
            )
        ).first()
    return _row(found) if found is not None else None


async def list_memories(
    db: Database, tenant_id: uuid.UUID, user_id: str, limit: int = 100
) -> list[MemoryRow]:
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(
            text(
                f"SELECT {_FIELDS} FROM memories WHERE tenant_id = :t AND user_id = :u "
                "AND status <> 'deleted' ORDER BY id DESC LIMIT :limit"
            ),
            {"t": tenant_id, "u": user_id, "limit": limit},
        )
        return [_row(r) for r in rows]


async def stored_with_other_model(
    db: Database,
    model: str,
    after: uuid.UUID | None,
    limit: int = 500,
    tenant_id: uuid.UUID | None = None,
) -> list[tuple[uuid.UUID, MemoryRow]]:
    """(tenant, memory) pairs stored by another embedding model, in id order from `after`;
    only `tenant_id`'s when given."""
    only_tenant = "AND tenant_id = :t " if tenant_id is not None else ""
    async with db.session() as session:
        rows = await session.execute(
            text(
                f"SELECT tenant_id, {_FIELDS} FROM memories WHERE status = 'stored' "
                f"AND embedding_model IS DISTINCT FROM :model {only_tenant}"
                "AND id > :after ORDER BY id LIMIT :n"
            ),
            {"model": model, "after": after or uuid.UUID(int=0), "n": limit, "t": tenant_id},
        )
        return [(row[0], _row(row[1:])) for row in rows]


async def live_ids_before(
    db: Database, tenant_id: uuid.UUID, user_id: str, before: uuid.UUID
) -> list[uuid.UUID]:
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(
            text(
                "SELECT id FROM memories WHERE tenant_id = :t AND user_id = :u AND id < :b "
                "AND status <> 'deleted'"
            ),
            {"t": tenant_id, "u": user_id, "b": before},
        )
        return [row[0] for row in rows]
