"""Response rows: written by the ingress (queued, with the turn's input items) before the
job is published, moved on by the worker (in progress, then finished with its output
items), read back by the Responses API, and chained by `previous_response_id`.

Every write is idempotent (by id, or a status set to what it already is), so a
redelivered job or a replayed event changes nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import conversation_items
from infra.db.conversation_models import Conversation, ConversationItem, ResponseRecord
from infra.db.conversations import Claim, claimed
from infra.db.engine import Database
from schemas.conversations import StoredItem

TERMINAL = ("completed", "failed", "incomplete", "cancelled")
# How far back a previous_response_id chain is followed: a longer one is cut there.
MAX_CHAIN = 1000

_CHAIN = text(
    """
    WITH RECURSIVE chain(id, previous_response_id, depth) AS (
        SELECT id, previous_response_id, 1 FROM responses
        WHERE id = :start AND tenant_id = :tenant
        UNION ALL
        SELECT r.id, r.previous_response_id, c.depth + 1
        FROM responses r JOIN chain c ON r.id = c.previous_response_id
        WHERE r.tenant_id = :tenant AND c.depth < :limit
    )
    SELECT id FROM chain ORDER BY depth DESC
    """
)


async def create(
    db: Database, row: ResponseRecord, items: Sequence[StoredItem], claim: Claim | None = None
) -> None:
    """The response (queued) and its input items, in one transaction. Items are kept with
    the response when it is stored, and in its conversation when it has one. `claim`: the
    event a projection applies (once)."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        await session.execute(insert(ResponseRecord).values(_values(row)).on_conflict_do_nothing())
        await _keep(session, row, items, 0, row.created_at)


async def _keep(
    session: AsyncSession,
    row: ResponseRecord,
    items: Sequence[StoredItem],
    phase: int,
    at: datetime | None,
) -> None:
    """A turn's items: with the response when stored, in its conversation when it has one."""
    if row.store or row.conversation_id is not None:
        await conversation_items.add(
            session,
            row.tenant_id,
            items,
            conversation_id=row.conversation_id,
            response_id=row.id if row.store else None,
            phase=phase,
            at=at,
        )


def _values(row: ResponseRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "user_id": row.user_id,
        "conversation_id": row.conversation_id,
        "previous_response_id": row.previous_response_id,
        "model": row.model,
        "status": row.status,
        "store": row.store,
        "background": row.background,
        "params": row.params,
        "created_at": row.created_at,
    }


async def get(db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID) -> ResponseRecord | None:
    return await db.get(ResponseRecord, response_id, tenant_id)


async def set_status(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, status: str
) -> None:
    """Move a response that has not ended to `status` (an ended one stays as it ended)."""
    async with db.transaction() as session:
        await session.execute(
            update(ResponseRecord)
            .where(
                ResponseRecord.id == response_id,
                ResponseRecord.tenant_id == tenant_id,
                ResponseRecord.status.not_in(TERMINAL),
            )
            .values(status=status)
        )


async def finish(
    db: Database,
    tenant_id: uuid.UUID,
    response_id: uuid.UUID,
    *,
    status: str,
    output: Sequence[StoredItem] = (),
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    at: datetime | None = None,
    claim: Claim | None = None,
) -> ResponseRecord | None:
    """End the response and keep its output items (with it when stored, in its
    conversation when it has one), in one transaction. Returns the row; None when
    there is none (deleted meanwhile, or not in a replay). `at`: when it ended (now
    by default; a replay gives the event's time)."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return None
        row = await session.get(ResponseRecord, response_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        row.status = status
        row.usage = usage
        row.error = error
        row.context = context
        row.completed_at = row.completed_at or at or datetime.now(UTC)
        await _keep(session, row, output, 1, at)
        return row


async def items(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, phase: int
) -> list[StoredItem]:
    return await conversation_items.of_responses(db, tenant_id, [response_id], phase)


async def delete_response(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, claim: Claim | None = None
) -> bool:
    """Remove the response and the items only it holds; a conversation keeps its own.
    False when there was none."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return False
        gone = await session.execute(
            delete(ResponseRecord)
            .where(ResponseRecord.id == response_id, ResponseRecord.tenant_id == tenant_id)
            .returning(ResponseRecord.id)
        )
        if gone.first() is None:
            return False
        owned = (
            ConversationItem.tenant_id == tenant_id,
            ConversationItem.response_id == response_id,
        )
        await session.execute(
            delete(ConversationItem).where(
                *owned,
                ConversationItem.conversation_id.is_(None),
            )
        )
        await session.execute(
            update(ConversationItem).where(*owned).values(response_id=None, phase=None)
        )
        return True


async def chain(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, limit: int = MAX_CHAIN
) -> list[uuid.UUID]:
    """The response and those before it by `previous_response_id`, oldest first (at
    most `limit`; one recursive query)."""
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(
            _CHAIN, {"start": response_id, "tenant": tenant_id, "limit": limit}
        )
        return [r[0] for r in rows]


async def delete_unpublished(db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID) -> None:
    """Undo `create` for a job that was never published: the row and every item it wrote."""
    async with db.transaction() as session:
        await session.execute(
            delete(ResponseRecord).where(
                ResponseRecord.id == response_id, ResponseRecord.tenant_id == tenant_id
            )
        )
        await session.execute(
            delete(ConversationItem).where(
                ConversationItem.tenant_id == tenant_id,
                ConversationItem.id.in_(_input_ids(response_id)),
            )
        )


def _input_ids(response_id: uuid.UUID) -> Any:
    # The input items' ids all derive from the response id (position prefix).
    return select(ConversationItem.id).where(
        ConversationItem.position.startswith(response_id.hex + ".0")
    )


async def conversation(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation | None:
    """The conversation a turn names, if it is the tenant's."""
    return await db.get(Conversation, conversation_id, tenant_id)
