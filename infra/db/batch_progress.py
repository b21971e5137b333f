"""A batch's progress: finished lines counted many at a time, expiry, and the lines' results.

A line is counted by a conditional update (pending -> succeeded/failed) in
the transaction that moves its batch's counters, so a redelivered outcome is
never counted twice; a batch's counters move once per call, not once per line.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlmodel import col

from infra.db.batches import CHUNK, add_to_counters, cancel_queued_jobs
from infra.db.engine import Database
from infra.db.models import Batch, BatchLine, Job, JobResult, utcnow


@dataclass(frozen=True)
class Counted:
    moved: list[Batch]  # batches whose counters changed now
    seen_before: set[uuid.UUID]  # batches of lines that had been counted already


async def record_outcomes(
    db: Database, succeeded: Sequence[uuid.UUID], failed: Sequence[uuid.UUID]
) -> Counted:
    """Counts the lines of these finished jobs (jobs of no batch are ignored)."""
    completed: Counter[uuid.UUID] = Counter()
    failures: Counter[uuid.UUID] = Counter()
    counted: set[uuid.UUID] = set()
    async with db.transaction() as session:
        for status, ids, tally in (
            ("succeeded", succeeded, completed),
            ("failed", failed, failures),
        ):
            if not ids:
                continue
            rows = await session.execute(
                update(BatchLine)
                .where(BatchLine.job_id.in_(ids), BatchLine.status == "pending")
                .values(status=status)
                .returning(BatchLine.job_id, BatchLine.batch_id)
            )
            for job_id, batch_id in rows:
                counted.add(job_id)
                tally[batch_id] += 1
        rest = [j for j in (*succeeded, *failed) if j not in counted]
        before: set[uuid.UUID] = set()
        if rest:
            found = await session.execute(
                select(BatchLine.batch_id).where(BatchLine.job_id.in_(rest)).distinct()
            )
            before = set(found.scalars())
        moved = []
        for batch_id in sorted(completed.keys() | failures.keys()):  # one lock order
            counted_now = add_to_counters(
                batch_id, completed=completed[batch_id], failed=failures[batch_id]
            )
            moved.append((await session.execute(counted_now)).scalar_one())
    return Counted(moved, before - {b.id for b in moved})


async def due_to_expire(db: Database, now: datetime) -> list[uuid.UUID]:
    """Batches past their window, and expired ones whose finalization did not finish."""
    async with db.session() as session:
        rows = await session.execute(
            select(Batch.id).where(
                or_(
                    and_(Batch.status == "in_progress", col(Batch.expires_at) <= now),
                    and_(Batch.status == "finalizing", Batch.expired_at.is_not(None)),
                )
            )
        )
        return list(rows.scalars())


async def expire(db: Database, batch_id: uuid.UUID) -> tuple[Batch, list[uuid.UUID]] | None:
    """Stops a batch past its window: its unfinished lines will not run and count as
    not done (like cancelled ones); it moves to `finalizing`. The batch and the jobs
    of its expired lines; None if it was not due."""
    now = utcnow()
    async with db.transaction() as session:
        moved = (
            await session.execute(
                update(Batch)
                .where(
                    Batch.id == batch_id,
                    Batch.status == "in_progress",
                    col(Batch.expires_at) <= now,
                )
                .values(status="finalizing", finalizing_at=now, expired_at=now)
                .returning(Batch.id)
            )
        ).scalar_one_or_none()
        if moved is None:
            return None
        expired = list(
            (
                await session.execute(
                    update(BatchLine)
                    .where(BatchLine.batch_id == batch_id, BatchLine.status == "pending")
                    .values(status="expired")
                    .returning(BatchLine.job_id)
                )
            ).scalars()
        )
        for start in range(0, len(expired), CHUNK):
            # Queued jobs are skipped by the lane; running ones finish unseen.
            await session.execute(
                cancel_queued_jobs(expired[start : start + CHUNK], "batch expired", now)
            )
        batch = (
            await session.execute(add_to_counters(batch_id, cancelled=len(expired)))
        ).scalar_one()
    return batch, expired


@dataclass(frozen=True)
class LineResult:
    custom_id: str
    status: str  # the line's: succeeded, failed, cancelled, expired
    job_id: uuid.UUID
    error: str | None
    text: str | None  # None: no result
    finish_reason: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    tool_calls: list[dict[str, Any]] | None
    created_at: datetime | None


async def line_results(db: Database, batch_id: uuid.UUID) -> AsyncIterator[LineResult]:
    """Every line of the batch in input order, streamed from the database."""
    columns = (
        BatchLine.custom_id,
        BatchLine.status,
        Job.id,
        Job.error,
        JobResult.text,
        JobResult.finish_reason,
        JobResult.model,
        JobResult.input_tokens,
        JobResult.output_tokens,
        JobResult.tool_calls,
        JobResult.created_at,
    )
    query = (
        select(*columns)
        .join(Job, Job.id == BatchLine.job_id)
        .outerjoin(JobResult, JobResult.job_id == Job.id)
        .where(BatchLine.batch_id == batch_id)
        .order_by(BatchLine.line_no)
        .execution_options(yield_per=CHUNK)
    )
    async with db.session() as session:
        rows = await session.stream(query)
        async for row in rows:
            yield LineResult(
                custom_id=row[0],
                status=row[1],
                job_id=row[2],
                error=row[3],
                text=row[4],
                finish_reason=row[5],
                model=row[6],
                input_tokens=row[7] or 0,
                output_tokens=row[8] or 0,
                tool_calls=row[9],
                created_at=row[10],
            )
