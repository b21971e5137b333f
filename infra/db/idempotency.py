"""Claiming an event for a consumer group, in the transaction of its effects.

A unique-key violation means "already done": the handler's effects roll back
with the claim, so a redelivered event changes nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db.engine import Database
from infra.db.models import ProcessedEvent, utcnow


async def claim(session: AsyncSession, group: str, event_id: uuid.UUID) -> bool:
    """True if this transaction claimed the event; False if it was already processed."""
    claimed = await session.execute(
        insert(ProcessedEvent)
        .values(consumer_group=group, event_id=event_id, processed_at=utcnow())
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    return claimed.first() is not None


async def is_processed(db: Database, group: str, event_id: uuid.UUID) -> bool:
    async with db.session() as session:
        found = await session.execute(
            select(ProcessedEvent.event_id).where(
                ProcessedEvent.consumer_group == group, ProcessedEvent.event_id == event_id
            )
        )
        return found.first() is not None


async def processed_among(
    db: Database, group: str, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these events the group has processed: one look-up for a whole list."""
    if not event_ids:
        return set()
    async with db.session() as session:
        found = await session.execute(
            text(
                "SELECT event_id FROM processed_events "
                "WHERE consumer_group = :g AND event_id = ANY(:ids)"
            ),
            {"g": group, "ids": list(event_ids)},
        )
        return {row[0] for row in found}
