"""Files, batches and batch lines: written by the ingress and the batch group.

Every write here is idempotent on its own (conditional status changes, inserts
that ignore conflicts), so a redelivered event or a restarted worker can run
it again without counting a line twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import ReturningUpdate, Update

from infra.db.engine import Database
from infra.db.models import Batch, BatchLine, Job, StoredFile, utcnow

CHUNK = 1000
OPEN = ("in_progress", "cancelling", "finalizing")


def add_to_counters(batch_id: uuid.UUID, **lines: int) -> ReturningUpdate[Batch]:
    """Adds to the batch's line counters (completed=, failed=, cancelled=) in one
    statement, so concurrent counters add up; returns the batch."""
    added = {name: getattr(Batch, name) + n for name, n in lines.items()}
    return update(Batch).where(Batch.id == batch_id).values(added).returning(Batch)


def cancel_queued_jobs(job_ids: Any, error: str, now: datetime) -> Update:
    """Cancels those of these jobs (ids, or a subquery of them) that have not
    started yet; running ones are left to finish."""
    return (
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == "queued")
        .values(status="cancelled", finished_at=now, error=error)
    )


async def insert_file(db: Database, row: StoredFile) -> None:
    async with db.transaction() as session:
        values = row.model_dump()
        await session.execute(insert(StoredFile).values(**values).on_conflict_do_nothing())


async def get_file(db: Database, tenant_id: uuid.UUID, file_id: uuid.UUID) -> StoredFile | None:
    async with db.tenant_reads(tenant_id) as session:
        return (
            await session.execute(
                select(StoredFile).where(
                    StoredFile.id == file_id,
                    StoredFile.tenant_id == tenant_id,
                    StoredFile.deleted_at.is_(None),
                )
            )
        ).scalar_one_or_none()


async def delete_file(db: Database, tenant_id: uuid.UUID, file_id: uuid.UUID) -> StoredFile | None:
    async with db.transaction() as session:
        return (
            await session.execute(
                update(StoredFile)
                .where(
                    StoredFile.id == file_id,
                    StoredFile.tenant_id == tenant_id,
                    StoredFile.deleted_at.is_(None),
                )
                .values(deleted_at=utcnow())
                .returning(StoredFile)
            )
        ).scalar_one_or_none()


async def insert_batch(db: Database, batch: Batch) -> None:
    await db.add(batch)


async def get_batch(
    db: Database, batch_id: uuid.UUID, tenant_id: uuid.UUID | None = None
) -> Batch | None:
    """The batch; with `tenant_id`, only if it is that tenant's (read behind the wall)."""
    return await db.get(Batch, batch_id, tenant_id)


async def list_batches(
    db: Database,
    tenant_id: uuid.UUID,
    after: uuid.UUID | None,
    limit: int,
    *,
    user_id: str | None = None,
) -> list[Batch]:
    """Newest first (ids are time-ordered); `after` is the last id of the previous page.
    With `user_id`, only that user's batches."""
    query = select(Batch).where(Batch.tenant_id == tenant_id)
    if user_id is not None:
        query = query.where(Batch.user_id == user_id)
    if after is not None:
        query = query.where(Batch.id < after)
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(query.order_by(Batch.id.desc()).limit(limit))
        return list(rows.scalars())


async def set_status(
    db: Database, batch_id: uuid.UUID, status: str, *, only_from: Sequence[str], **values: Any
) -> Batch | None:
    """Moves the batch to `status` if it is in one of `only_from`; None if it was not."""
    stamp = {f"{status}_at": utcnow()} if hasattr(Batch, f"{status}_at") else {}
    async with db.transaction() as session:
        return (
            await session.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.status.in_(only_from))
                .values(status=status, **stamp, **values)
                .returning(Batch)
            )
        ).scalar_one_or_none()


async def add_lines(
    db: Database, batch_id: uuid.UUID, jobs: list[dict[str, Any]], lines: list[dict[str, Any]]
) -> Batch | None:
    """Stores every line and its job (rows of the jobs and batch_lines tables, as
    dicts), then starts the batch; safe to run again."""
    async with db.transaction() as session:
        # One statement, many parameter sets: compiled once, not once per row.
        for start in range(0, len(jobs), CHUNK):
            await session.execute(
                insert(Job.__table__).on_conflict_do_nothing(), jobs[start : start + CHUNK]
            )
            await session.execute(
                insert(BatchLine.__table__).on_conflict_do_nothing(), lines[start : start + CHUNK]
            )
        # A batch cancelled while it was validating keeps `cancelling`: its lines
        # are then cancelled by the caller.
        return (
            await session.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.status.in_(("validating", "cancelling")))
                .values(
                    status=case((Batch.status == "validating", "in_progress"), else_=Batch.status),
                    in_progress_at=utcnow(),
                    total=len(lines),
                )
                .returning(Batch)
            )
        ).scalar_one_or_none()


@dataclass(frozen=True)
class PendingLine:
    job_id: uuid.UUID
    api_key_id: uuid.UUID | None
    model: str
    request: dict[str, Any]  # the ChatJob, as JSON
    request_event_id: uuid.UUID


async def pending_lines(db: Database, batch_id: uuid.UUID) -> list[PendingLine]:
    """The lines not counted yet, in input order, with what publishing them needs."""
    async with db.session() as session:
        rows = await session.execute(
            select(Job.id, Job.api_key_id, Job.model, Job.request, Job.request_event_id)
            .join(BatchLine, BatchLine.job_id == Job.id)
            .where(BatchLine.batch_id == batch_id, BatchLine.status == "pending")
            .order_by(BatchLine.line_no)
        )
        return [PendingLine(*row) for row in rows]


async def refuse_lines(
    db: Database, batch_id: uuid.UUID, refusals: Sequence[tuple[uuid.UUID, str]]
) -> Batch | None:
    """Lines that will not run (over budget): counted as failed, with their job's error."""
    now = utcnow()
    async with db.transaction() as session:
        refused = set(
            (
                await session.execute(
                    update(BatchLine)
                    .where(
                        BatchLine.job_id.in_([j for j, _ in refusals]),
                        BatchLine.status == "pending",
                    )
                    .values(status="refused")
                    .returning(BatchLine.job_id)
                )
            ).scalars()
        )
        if refused:
            await session.execute(
                update(Job.__table__)
                .where(Job.__table__.c.id == bindparam("b_id"))
                .values(status="failed", finished_at=now, error=bindparam("b_error")),
                [{"b_id": j, "b_error": e} for j, e in refusals if j in refused],
            )
        return (
            await session.execute(add_to_counters(batch_id, failed=len(refused)))
        ).scalar_one_or_none()


async def cancel_pending(db: Database, batch_id: uuid.UUID) -> tuple[Batch | None, list[uuid.UUID]]:
    """Cancels the lines whose job has not started (running ones finish and are
    counted); the batch, and the jobs cancelled now."""
    async with db.transaction() as session:
        queued = (
            select(BatchLine.job_id)
            .where(BatchLine.batch_id == batch_id, BatchLine.status == "pending")
            .scalar_subquery()
        )
        cancelled = list(
            (
                await session.execute(
                    cancel_queued_jobs(queued, "batch cancelled", utcnow()).returning(Job.id)
                )
            ).scalars()
        )
        for start in range(0, len(cancelled), CHUNK):
            await session.execute(
                update(BatchLine)
                .where(BatchLine.job_id.in_(cancelled[start : start + CHUNK]))
                .values(status="cancelled")
            )
        batch = (
            await session.execute(add_to_counters(batch_id, cancelled=len(cancelled)))
        ).scalar_one_or_none()
    return batch, cancelled


async def count_lines(db: Database, batch_id: uuid.UUID) -> int:
    async with db.session() as session:
        found = await session.execute(
            select(func.count()).select_from(BatchLine).where(BatchLine.batch_id == batch_id)
        )
        return int(found.scalar_one())
