"""Conversation titles: read whether one is missing, set one once."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from infra.db.conversation_models import Conversation
from infra.db.engine import Database


async def untitled(db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
    """Whether the tenant's conversation exists and has no title yet."""
    found = await db.get(Conversation, conversation_id)
    return found is not None and found.tenant_id == tenant_id and found.title is None


async def set_title(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID, title: str
) -> bool:
    """Set it unless a title came meanwhile (a second turn racing the first); whether set."""
    async with db.transaction() as session:
        result = await session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.tenant_id == tenant_id,
                Conversation.title.is_(None),
            )
            .values(title=title)
        )
        return bool(result.rowcount)
