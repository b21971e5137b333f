"""Job rows and results: created by the ingress, completed by model-calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.idempotency import claim, is_processed
from infra.db.models import Job, JobResult, utcnow

__all__ = [
    "JobWithResult",
    "complete_job",
    "delete_unpublished",
    "fail_job",
    "get_job",
    "insert_job",
    "is_processed",
    "mark_published",
    "mark_running",
    "start_job",
]


@dataclass(frozen=True)
class JobWithResult:
    job: Job
    result: JobResult | None


async def insert_job(db: Database, job: Job) -> tuple[Job, bool]:
    """Insert a job; with an idempotency key already used, return the existing one."""
    async with db.transaction() as session:
        values = job.model_dump(by_alias=False)
        values["metadata"] = values.pop("job_metadata")
        stmt = insert(Job).values(**values)
        if job.idempotency_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        inserted = (await session.execute(stmt.returning(Job.id))).first()
        if inserted is not None:
            return job, True
        existing = (
            await session.execute(
                select(Job).where(
                    Job.tenant_id == job.tenant_id, Job.idempotency_key == job.idempotency_key
                )
            )
        ).scalar_one()
        return existing, False


async def mark_published(db: Database, job_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(published_at=utcnow()))


async def delete_unpublished(db: Database, job_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        await session.execute(delete(Job).where(Job.id == job_id))


async def get_job(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobWithResult | None:
    async with db.session() as session:
        row = (
            await session.execute(
                select(Job, JobResult)
                .outerjoin(JobResult, JobResult.job_id == Job.id)
                .where(Job.id == job_id, Job.tenant_id == tenant_id)
            )
        ).first()
    if row is None:
        return None
    return JobWithResult(row[0], row[1])


async def mark_running(db: Database, job_id: uuid.UUID, provider: str) -> int:
    """Status running, one more attempt; returns the attempt number (0: job is finished)."""
    async with db.transaction() as session:
        attempts = (
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(("queued", "running")))
                .values(
                    status="running",
                    provider=provider,
                    attempts=Job.attempts + 1,
                    started_at=utcnow(),
                )
                .returning(Job.attempts)
            )
        ).scalar_one_or_none()
    return int(attempts or 0)


async def start_job(db: Database, job: Job, provider: str | None) -> int:
    """Like mark_running, creating the row first when the ingress wrote none.

    The OpenAI-compatible routes leave the row to the worker, which keeps a
    database write off the request path.
    """
    values = job.model_dump(by_alias=False)
    values["metadata"] = values.pop("job_metadata")
    now = utcnow()
    values.update(status="running", provider=provider, attempts=1, started_at=now)
    async with db.transaction() as session:
        attempts = (
            await session.execute(
                # The table, not the ORM class: the ORM's bulk-insert path costs
                # more CPU than the query on this per-call path.
                insert(Job.__table__)
                .values(**values)
                .on_conflict_do_update(
                    index_elements=["id"],
                    set_={
                        "status": "running",
                        "provider": provider,
                        "attempts": Job.attempts + 1,
                        "started_at": now,
                    },
                    where=Job.status.in_(("queued", "running")),
                )
                .returning(Job.attempts)
            )
        ).scalar_one_or_none()
    return int(attempts or 0)


async def complete_job(db: Database, group: str, event_id: uuid.UUID, result: JobResult) -> bool:
    """Store the result and claim the event in one transaction; False if already done."""
    async with db.transaction() as session:
        if not await claim(session, group, event_id):
            return False
        await session.execute(insert(JobResult.__table__).values(**result.model_dump()))
        await session.execute(
            update(Job)
            .where(Job.id == result.job_id)
            .values(
                status="succeeded",
                finished_at=utcnow(),
                error=None,
                model=result.model,
                provider=result.provider,
            )
        )
    return True


async def fail_job(
    db: Database, group: str, event_id: uuid.UUID, job_id: uuid.UUID, error: str
) -> bool:
    async with db.transaction() as session:
        if not await claim(session, group, event_id):
            return False
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="failed", finished_at=utcnow(), error=error[:4000])
        )
    return True
