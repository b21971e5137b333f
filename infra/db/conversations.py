"""Conversation rows: create, read, list a user's threads, update, delete; their items in pages.

Writes come from two places: the ingress (the Conversations API, live) and the
conversations projection (a replay of conversation.events). Both call the same
functions; a projection passes the event it applies as a `Claim`, which is taken in the
same transaction as the rows, so an event applied twice changes nothing the second time.
Every write is idempotent by id besides. Reads are tenant-walled (`Database.tenant_reads`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import conversation_items
from infra.db.conversation_models import Conversation, ConversationItem
from infra.db.engine import Database
from infra.db.idempotency import claim as claim_event
from schemas.conversations import StoredItem

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Claim:
    """The event a projection applies: claimed with its effects, applied once."""

    group: str
    event_id: uuid.UUID


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    has_more: bool


class UnknownCursor(LookupError):
    """`after` names nothing the list holds (a page cursor from elsewhere, or deleted)."""


async def claimed(session: AsyncSession, claim: Claim | None) -> bool:
    """Whether this transaction may apply its event (always, outside a projection)."""
    return claim is None or await claim_event(session, claim.group, claim.event_id)


async def create(
    db: Database,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    user_id: str | None,
    metadata: dict[str, str],
    items: Sequence[StoredItem],
    at: datetime,
    claim: Claim | None = None,
) -> None:
    """The conversation and its first items, in one transaction (nothing twice, by id)."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        await session.execute(
            insert(Conversation)
            .values(
                id=conversation_id,
                tenant_id=tenant_id,
                user_id=user_id,
                metadata=metadata,
                created_at=at,
                updated_at=at,
            )
            .on_conflict_do_nothing()
        )
        await conversation_items.add(
            session, tenant_id, items, conversation_id=conversation_id, at=at
        )


async def get(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation | None:
    return await db.get(Conversation, conversation_id, tenant_id)


async def list_conversations(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    user_id: str | None,
    limit: int,
    after: uuid.UUID | None = None,
    order: Order = "desc",
) -> Page:
    """The tenant's conversations (one user's when `user_id` is given) by their newest
    activity (updated_at, then id), newest first unless `order` is "asc"."""
    async with db.tenant_reads(tenant_id) as session:
        query = select(Conversation).where(Conversation.tenant_id == tenant_id)
        if user_id is not None:
            query = query.where(Conversation.user_id == user_id)
        if after is not None:
            query = await _after_conversation(session, query, tenant_id, after, order)
        key = (Conversation.updated_at, Conversation.id)
        ordering = [c.desc() if order == "desc" else c.asc() for c in key]
        found = await session.execute(query.order_by(*ordering).limit(limit + 1))
        rows = list(found.scalars())
    return Page(rows[:limit], len(rows) > limit)


async def _after_conversation(
    session: AsyncSession,
    query: Any,
    tenant_id: uuid.UUID,
    after: uuid.UUID,
    order: Order,
) -> Any:
    cursor = await session.get(Conversation, after)
    if cursor is None or cursor.tenant_id != tenant_id:
        raise UnknownCursor(str(after))
    at, ident = cursor.updated_at, cursor.id
    if order == "desc":
        return query.where(
            or_(
                Conversation.updated_at < at,
                and_(Conversation.updated_at == at, Conversation.id < ident),
            )
        )
    return query.where(
        or_(
            Conversation.updated_at > at,
            and_(Conversation.updated_at == at, Conversation.id > ident),
        )
    )


async def update_conversation(
    db: Database,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    metadata: dict[str, str] | None = None,
    title: str | None = None,
    claim: Claim | None = None,
) -> bool:
    """New metadata (replacing the old) and/or a title; False when there is no such
    conversation. Not activity: the list's order stays as it was."""
    values: dict[str, Any] = {}
    if metadata is not None:
        values["conversation_metadata"] = metadata
    if title is not None:
        values["title"] = title
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return True
        if not values:
            return await session.get(Conversation, conversation_id) is not None
        done = await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.tenant_id == tenant_id)
            .values(**values)
        )
        return bool(done.rowcount)


async def restore(db: Database, row: Conversation) -> None:
    """Put back a conversation's metadata and title as they were (an update not published)."""
    async with db.transaction() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == row.id, Conversation.tenant_id == row.tenant_id)
            .values(conversation_metadata=row.conversation_metadata, title=row.title)
        )


async def delete_conversation(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID, claim: Claim | None = None
) -> bool:
    """The conversation and every item in it; False when there was none."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return True
        await session.execute(
            delete(ConversationItem).where(
                ConversationItem.tenant_id == tenant_id,
                ConversationItem.conversation_id == conversation_id,
            )
        )
        done = await session.execute(
            delete(Conversation).where(
                Conversation.id == conversation_id, Conversation.tenant_id == tenant_id
            )
        )
        return bool(done.rowcount)


async def add_items(
    db: Database,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    items: Sequence[StoredItem],
    *,
    at: datetime,
    claim: Claim | None = None,
) -> None:
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return
        await conversation_items.add(
            session, tenant_id, items, conversation_id=conversation_id, at=at
        )


async def remove_items(db: Database, tenant_id: uuid.UUID, item_ids: Sequence[str]) -> None:
    """Take back items just added (their event was not published)."""
    async with db.transaction() as session:
        await session.execute(
            delete(ConversationItem).where(
                ConversationItem.tenant_id == tenant_id, ConversationItem.id.in_(list(item_ids))
            )
        )


async def items(
    db: Database,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    after: str | None = None,
    order: Order = "desc",
) -> Page:
    """A page of the conversation's items (StoredItem) in conversation order, newest first
    by default (as OpenAI lists them); `after` is the id of the last item of the page before."""
    async with db.tenant_reads(tenant_id) as session:
        query = select(ConversationItem).where(
            ConversationItem.tenant_id == tenant_id,
            ConversationItem.conversation_id == conversation_id,
        )
        if after is not None:
            cursor = await _item(session, tenant_id, conversation_id, after)
            if cursor is None:
                raise UnknownCursor(after)
            query = query.where(
                ConversationItem.position < cursor.position
                if order == "desc"
                else ConversationItem.position > cursor.position
            )
        ordering = (
            ConversationItem.position.desc() if order == "desc" else ConversationItem.position
        )
        found = await session.execute(query.order_by(ordering).limit(limit + 1))
        rows = [conversation_items.stored(r) for r in found.scalars()]
    return Page(rows[:limit], len(rows) > limit)


async def get_item(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID, item_id: str
) -> StoredItem | None:
    async with db.tenant_reads(tenant_id) as session:
        row = await _item(session, tenant_id, conversation_id, item_id)
        return None if row is None else conversation_items.stored(row)


async def _item(
    session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID, item_id: str
) -> ConversationItem | None:
    found = await session.execute(
        select(ConversationItem).where(
            ConversationItem.id == item_id,
            ConversationItem.tenant_id == tenant_id,
            ConversationItem.conversation_id == conversation_id,
        )
    )
    return found.scalar_one_or_none()


async def delete_item(
    db: Database,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    item_id: str,
    claim: Claim | None = None,
) -> bool:
    """One item out of the conversation; False when it holds no such item."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return True
        done = await session.execute(
            delete(ConversationItem).where(
                ConversationItem.id == item_id,
                ConversationItem.tenant_id == tenant_id,
                ConversationItem.conversation_id == conversation_id,
            )
        )
        return bool(done.rowcount)
