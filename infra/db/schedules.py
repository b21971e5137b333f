"""Schedules: their rows, the claim of a fired slot, and the runs waiting on a job."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.schedule_models import Schedule, ScheduleRun, ScheduleSlot


async def add_schedule(db: Database, schedule: Schedule) -> None:
    await db.add(schedule)


async def get_schedule(
    db: Database, tenant_id: uuid.UUID, schedule_id: uuid.UUID, user_id: str | None = None
) -> Schedule | None:
    """The tenant's schedule; with `user_id`, only if that user made it."""
    found = await db.get(Schedule, schedule_id, tenant_id)
    if found is None or (user_id is not None and found.user_id != user_id):
        return None
    return found


async def list_schedules(
    db: Database,
    tenant_id: uuid.UUID | None,
    user_id: str | None = None,
    limit: int = 500,
    after: uuid.UUID | None = None,
) -> Sequence[Schedule]:
    """A tenant's schedules (every tenant's with None), oldest first (ids are uuid7), from
    the one after `after`; a user's own only with `user_id`. Tasks' reminders are listed
    with their tasks, not here."""
    query = select(Schedule).where(Schedule.task_id.is_(None))
    if tenant_id is not None:
        query = query.where(Schedule.tenant_id == tenant_id)
    if user_id is not None:
        query = query.where(Schedule.user_id == user_id)
    if after is not None:
        query = query.where(Schedule.id > after)
    query = query.order_by(Schedule.id).limit(limit)
    if tenant_id is None:
        async with db.session() as session:
            return (await session.execute(query)).scalars().all()
    async with db.tenant_reads(tenant_id) as session:
        return (await session.execute(query)).scalars().all()


async def update_schedule(
    db: Database, tenant_id: uuid.UUID, schedule_id: uuid.UUID, values: dict[str, Any]
) -> Schedule | None:
    async with db.transaction() as session:
        found = (
            await session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id, Schedule.tenant_id == tenant_id)
                .values(**values, updated_at=utcnow())
                .returning(Schedule)
            )
        ).scalar_one_or_none()
        return found


async def delete_schedule(db: Database, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> bool:
    async with db.transaction() as session:
        deleted = await session.execute(
            delete(Schedule)
            .where(Schedule.id == schedule_id, Schedule.tenant_id == tenant_id)
            .returning(Schedule.id)
        )
        return deleted.first() is not None


@dataclass
class DueSlots:
    """The schedules due at `now`, each locked for this transaction: another scheduler
    copy skips them until it ends. `claim` records a fired slot; `advance` moves a
    schedule to its next slot. Both commit together when the block ends."""

    session: AsyncSession
    schedules: Sequence[Schedule]

    @asynccontextmanager
    async def each(self) -> AsyncIterator[None]:
        """One schedule's claims and move, undone alone if its block raises (a savepoint):
        one schedule that cannot fire now does not hold back the others."""
        async with self.session.begin_nested():
            yield

    async def claim(self, slot: ScheduleSlot) -> bool:
        """False when the slot was already fired (and committed) by anyone."""
        inserted = await self.session.execute(
            insert(ScheduleSlot)
            .values(
                id=slot.id,
                tenant_id=slot.tenant_id,
                schedule_id=slot.schedule_id,
                slot_at=slot.slot_at,
                fired_at=slot.fired_at,
                late=slot.late,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(ScheduleSlot.id)
        )
        return inserted.first() is not None

    async def advance(
        self, schedule: Schedule, next_fire_at: datetime | None, fired_at: datetime | None
    ) -> None:
        values: dict[str, Any] = {"next_fire_at": next_fire_at}
        if fired_at is not None:
            values["last_fired_at"] = fired_at
        await self.session.execute(
            update(Schedule).where(Schedule.id == schedule.id).values(**values)
        )


@asynccontextmanager
async def due_slots(db: Database, now: datetime, limit: int = 100) -> AsyncIterator[DueSlots]:
    async with db.transaction() as session:
        due = (
            (
                await session.execute(
                    select(Schedule)
                    .where(
                        Schedule.paused.is_(False),
                        Schedule.next_fire_at.is_not(None),
                        Schedule.next_fire_at <= now,  # type: ignore[operator]
                    )
                    .order_by(Schedule.next_fire_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        yield DueSlots(session, due)


async def fired_slots(db: Database, schedule_id: uuid.UUID) -> Sequence[ScheduleSlot]:
    async with db.session() as session:
        query = select(ScheduleSlot).where(ScheduleSlot.schedule_id == schedule_id)
        return (await session.execute(query.order_by(ScheduleSlot.slot_at))).scalars().all()


async def save_run(db: Database, run: ScheduleRun) -> None:
    async with db.transaction() as session:
        values = run.model_dump()
        await session.execute(insert(ScheduleRun).values(**values).on_conflict_do_nothing())


async def get_run(db: Database, job_id: uuid.UUID) -> ScheduleRun | None:
    return await db.get(ScheduleRun, job_id)


async def prune_slots(db: Database, before: datetime) -> int:
    """Deletes the claims of slots fired before `before`. A claim guards its slot only
    while the schedule's next fire time has not moved past it (the claim and the move
    commit together), so an old claim guards nothing."""
    async with db.transaction() as session:
        gone = await session.execute(delete(ScheduleSlot).where(ScheduleSlot.fired_at < before))
    return int(gone.rowcount or 0)
