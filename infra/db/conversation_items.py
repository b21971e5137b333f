"""Items of conversations and responses: written once each (by id), read in order.

Both the Conversations API (items a caller adds) and the responses (a turn's input and
output) write here; a turn's history is read from here too (`of_conversation`,
`of_responses`). Every write is idempotent by item id, so a redelivered or replayed
event adds nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db.conversation_models import Conversation, ConversationItem
from infra.db.engine import Database
from schemas.conversations import StoredItem


def _row(
    tenant_id: uuid.UUID,
    item: StoredItem,
    conversation_id: uuid.UUID | None,
    response_id: uuid.UUID | None,
    phase: int | None,
) -> dict[str, object]:
    return {
        "id": item.id,
        "tenant_id": tenant_id,
        "conversation_id": conversation_id,
        "response_id": response_id,
        "phase": phase,
        "position": item.position,
        "type": item.item.type,
        "item": item.model_dump(mode="json"),
        "created_at": datetime.fromtimestamp(item.created_at, UTC),
    }


async def add(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    items: Sequence[StoredItem],
    *,
    conversation_id: uuid.UUID | None,
    response_id: uuid.UUID | None = None,
    phase: int | None = None,
    at: datetime | None = None,
) -> None:
    """Insert the items (those already there by id are left as they are) and, in a
    conversation, mark it active at `at` (now by default; a replay gives the event's time,
    and a conversation's activity never goes back). Runs in the caller's transaction."""
    if not items:
        return
    rows = [_row(tenant_id, i, conversation_id, response_id, phase) for i in items]
    await session.execute(insert(ConversationItem).values(rows).on_conflict_do_nothing())
    if conversation_id is not None:
        moment = at or datetime.now(UTC)
        await session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.tenant_id == tenant_id,
                Conversation.updated_at < moment,
            )
            .values(updated_at=moment)
        )


async def add_items(
    db: Database,
    tenant_id: uuid.UUID,
    items: Sequence[StoredItem],
    *,
    conversation_id: uuid.UUID | None,
    response_id: uuid.UUID | None = None,
    phase: int | None = None,
) -> None:
    """`add` in a transaction of its own."""
    async with db.transaction() as session:
        await add(
            session,
            tenant_id,
            items,
            conversation_id=conversation_id,
            response_id=response_id,
            phase=phase,
        )


def stored(row: ConversationItem) -> StoredItem:
    return StoredItem.model_validate(row.item)


async def of_conversation(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> list[StoredItem]:
    """Every item of the conversation, oldest first: the history a turn starts from."""
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(
            select(ConversationItem)
            .where(
                ConversationItem.tenant_id == tenant_id,
                ConversationItem.conversation_id == conversation_id,
            )
            .order_by(ConversationItem.position)
        )
        return [stored(r) for r in rows.scalars()]


async def of_responses(
    db: Database, tenant_id: uuid.UUID, response_ids: Sequence[uuid.UUID], phase: int | None = None
) -> list[StoredItem]:
    """The items of these responses (only their input, phase 0, or output, 1, when given),
    in conversation order: a `previous_response_id` chain's history."""
    if not response_ids:
        return []
    query = select(ConversationItem).where(
        ConversationItem.tenant_id == tenant_id,
        ConversationItem.response_id.in_(list(response_ids)),
    )
    if phase is not None:
        query = query.where(ConversationItem.phase == phase)
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(query.order_by(ConversationItem.position))
        return [stored(r) for r in rows.scalars()]
