"""Response rows as the conversations projection rebuilds them: queued with their input,
ended with their output, deleted.

Live, the Responses API and the model-calls group write these rows; a replay of
ai.job.requested and conversation.events writes them here, each event once (its `Claim`
taken in the same transaction) and every row idempotent by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db import conversation_items
from infra.db.conversation_models import ConversationItem, ResponseRecord
from infra.db.conversations import Claim, claimed
from infra.db.engine import Database
from schemas.conversations import ResponseFinished, StoredItem


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
        await conversation_items.add(
            session,
            row.tenant_id,
            inputs,
            conversation_id=row.conversation_id,
            response_id=row.id,
            phase=0,
            at=row.created_at,
        )


async def finish(
    db: Database,
    tenant_id: uuid.UUID,
    finished: ResponseFinished,
    at: datetime,
    claim: Claim | None = None,
) -> None:
    """The response's end: its status, usage, error and context, and its output items
    (phase 1, in its conversation too) when it is stored or in a conversation."""
    error = None
    if finished.error_code is not None or finished.error_message is not None:
        error = {"code": finished.error_code, "message": finished.error_message}
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        await session.execute(
            update(ResponseRecord)
            .where(ResponseRecord.id == finished.response_id, ResponseRecord.tenant_id == tenant_id)
            .values(
                status=finished.status,
                model=finished.model,
                usage=finished.usage.model_dump(mode="json") if finished.usage else None,
                error=error,
                context=finished.context.model_dump(mode="json") if finished.context else None,
                completed_at=at,
            )
        )
        stored = await session.execute(
            select(ResponseRecord.store).where(
                ResponseRecord.id == finished.response_id, ResponseRecord.tenant_id == tenant_id
            )
        )
        keep = stored.scalar_one_or_none()
        if keep or finished.conversation_id is not None:
            await conversation_items.add(
                session,
                tenant_id,
                finished.output,
                conversation_id=finished.conversation_id,
                response_id=finished.response_id,
                phase=1,
                at=at,
            )


async def remove(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, claim: Claim | None = None
) -> None:
    """The response and its items outside any conversation (a thread keeps its turns)."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        await session.execute(
            delete(ConversationItem).where(
                ConversationItem.tenant_id == tenant_id,
                ConversationItem.response_id == response_id,
                ConversationItem.conversation_id.is_(None),
            )
        )
        await session.execute(
            delete(ResponseRecord).where(
                ResponseRecord.id == response_id, ResponseRecord.tenant_id == tenant_id
            )
        )
