"""Response rows as the conversations projection rebuilds them: queued with their input,
ended with their output, deleted.

Live, the Responses API and the model-calls group write these rows; a replay of
ai.job.requested and conversation.events writes them here, by the same rules: a turn's
items are kept with the response when it is stored, and in its conversation when it has
one. Each event is applied once (its `Claim` taken in the same transaction) and every row
is idempotent by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import conversation_items
from infra.db.conversation_models import ConversationItem, ResponseRecord
from infra.db.conversations import Claim, claimed
from infra.db.engine import Database
from schemas.conversations import ResponseFinished, StoredItem


async def _keep(
    session: AsyncSession,
    row: ResponseRecord,
    items: Sequence[StoredItem],
    phase: int,
    at: datetime,
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


async def record(
    db: Database, row: ResponseRecord, inputs: Sequence[StoredItem], claim: Claim | None = None
) -> None:
    """A response as it is queued, with its input items (phase 0)."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        values = row.model_dump()
        values["params"] = row.params
        await session.execute(insert(ResponseRecord).values(**values).on_conflict_do_nothing())
        await _keep(session, row, inputs, 0, row.created_at)


async def finish(
    db: Database,
    tenant_id: uuid.UUID,
    finished: ResponseFinished,
    at: datetime,
    claim: Claim | None = None,
) -> None:
    """The response's end: its status, usage, error and context, and its output items
    (phase 1). A response not in the replay (deleted, or requested before it) is left."""
    error = None
    if finished.error_code is not None or finished.error_message is not None:
        error = {"code": finished.error_code, "message": finished.error_message}
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        row = await session.get(ResponseRecord, finished.response_id)
        if row is None or row.tenant_id != tenant_id:
            return
        row.status = finished.status
        row.usage = finished.usage.model_dump(mode="json") if finished.usage else None
        row.error = error
        row.context = finished.context.model_dump(mode="json") if finished.context else None
        row.completed_at = row.completed_at or at
        await _keep(session, row, finished.output, 1, at)


async def remove(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, claim: Claim | None = None
) -> None:
    """The response and the items only it holds; a conversation keeps its own."""
    owned = (ConversationItem.tenant_id == tenant_id, ConversationItem.response_id == response_id)
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        await session.execute(
            delete(ConversationItem).where(*owned, ConversationItem.conversation_id.is_(None))
        )
        await session.execute(
            update(ConversationItem).where(*owned).values(response_id=None, phase=None)
        )
        await session.execute(
            delete(ResponseRecord).where(
                ResponseRecord.id == response_id, ResponseRecord.tenant_id == tenant_id
            )
        )
