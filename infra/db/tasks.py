"""Users' tasks, and their reminders: one-shot schedules kept in step with the task."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.schedule_models import Schedule, Task
from schemas.ids import uuid7

REMINDER = "reminder"


def reminder_schedules(task: Task) -> list[Schedule]:
    """One one-shot schedule per reminder offset still ahead: at `due_at - offset`."""
    if task.due_at is None or task.status == "done":
        return []
    now = utcnow()
    found = []
    for before in sorted(set(task.reminders)):
        at = task.due_at - timedelta(seconds=before)
        if at <= now:
            continue
        found.append(
            Schedule(
                id=uuid7(),
                tenant_id=task.tenant_id,
                user_id=task.user_id,
                name=REMINDER,
                at=at,
                target={"remind_before_s": before},
                missed="run_once",
                missed_max=1,
                task_id=task.id,
                next_fire_at=at,
            )
        )
    return found


async def add_task(db: Database, task: Task) -> None:
    async with db.transaction() as session:
        session.add(task)
        await session.flush()
        session.add_all(reminder_schedules(task))


async def add_task_once(db: Database, task: Task) -> bool:
    """Add the task unless one of its id exists (a step run again); False then."""
    values = {c.name: getattr(task, c.name) for c in Task.__table__.columns}
    async with db.transaction() as session:
        inserted = await session.execute(
            insert(Task).values(**values).on_conflict_do_nothing().returning(Task.id)
        )
        if inserted.first() is None:
            return False
        session.add_all(reminder_schedules(task))
        return True


async def get_task(
    db: Database, tenant_id: uuid.UUID, task_id: uuid.UUID, user_id: str | None = None
) -> Task | None:
    found = await db.get(Task, task_id, tenant_id)
    if found is None or (user_id is not None and found.user_id != user_id):
        return None
    return found


async def list_tasks(
    db: Database,
    tenant_id: uuid.UUID,
    user_id: str,
    status: str | None,
    limit: int,
    after: uuid.UUID | None = None,
) -> Sequence[Task]:
    """A user's tasks, newest first (ids are uuid7), from the one after `after`."""
    query = select(Task).where(Task.tenant_id == tenant_id, Task.user_id == user_id)
    if status is not None:
        query = query.where(Task.status == status)
    if after is not None:
        query = query.where(Task.id < after)
    query = query.order_by(Task.id.desc()).limit(limit)
    async with db.tenant_reads(tenant_id) as session:
        return (await session.execute(query)).scalars().all()


async def update_task(
    db: Database, tenant_id: uuid.UUID, task_id: uuid.UUID, values: dict[str, Any]
) -> Task | None:
    """Update the task; its reminders are made again when its due time, reminders or
    status change."""
    async with db.transaction() as session:
        task = (
            await session.execute(
                update(Task)
                .where(Task.id == task_id, Task.tenant_id == tenant_id)
                .values(**values, updated_at=utcnow())
                .returning(Task)
            )
        ).scalar_one_or_none()
        if task is None:
            return None
        if {"due_at", "reminders", "status"} & values.keys():
            await session.execute(delete(Schedule).where(Schedule.task_id == task_id))
            session.add_all(reminder_schedules(task))
        return task


async def delete_task(db: Database, tenant_id: uuid.UUID, task_id: uuid.UUID) -> bool:
    """Delete the task (its reminders go with it)."""
    async with db.transaction() as session:
        deleted = await session.execute(
            delete(Task).where(Task.id == task_id, Task.tenant_id == tenant_id).returning(Task.id)
        )
        return deleted.first() is not None


async def reminders_of(db: Database, task_id: uuid.UUID) -> Sequence[Schedule]:
    async with db.session() as session:
        query = select(Schedule).where(Schedule.task_id == task_id)
        return (await session.execute(query.order_by(Schedule.at))).scalars().all()
