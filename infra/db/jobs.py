"""Job rows and results: created by the ingress, completed by model-calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.idempotency import is_processed
from infra.db.models import Job, JobResult, utcnow

__all__ = [
    "JobWithResult",
    "NewJob",
    "Outcome",
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
class NewJob:
    """What a worker knows of a job it starts and the ingress did not write."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    api_key_id: uuid.UUID | None
    user_id: str | None
    kind: str
    model: str
    request: dict[str, Any]
    metadata: dict[str, Any]
    request_event_id: uuid.UUID


@dataclass(frozen=True)
class Outcome:
    """A job's answer, as stored in job_results (a plain value: cheap on the per-call path)."""

    job_id: uuid.UUID
    text: str
    finish_reason: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    tool_calls: list[dict[str, Any]] | None = None
    cached: bool = False

    @classmethod
    def of(cls, row: JobResult) -> Outcome:
        return cls(
            row.job_id, row.text, row.finish_reason, row.provider, row.model, row.input_tokens,
            row.output_tokens, row.cost_usd, row.tool_calls, row.cached,
        )  # fmt: skip


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


_START = """
INSERT INTO jobs (id, tenant_id, api_key_id, user_id, kind, model, provider, status, request,
                  metadata, attempts, request_event_id, created_at, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8::jsonb, $9::jsonb, 1, $10, now(), now())
ON CONFLICT (id) DO UPDATE
   SET status = 'running', provider = EXCLUDED.provider, attempts = jobs.attempts + 1,
       started_at = now()
 WHERE jobs.status IN ('queued', 'running')
RETURNING attempts
"""

# One statement claims the event and stores its effects: atomic without a
# BEGIN/COMMIT round trip each, and nothing happens when the claim fails.
_COMPLETE = """
WITH claimed AS (
    INSERT INTO processed_events (consumer_group, event_id, processed_at)
    VALUES ($1, $2, now()) ON CONFLICT DO NOTHING RETURNING event_id
), stored AS (
    INSERT INTO job_results (job_id, text, finish_reason, provider, model, input_tokens,
                             output_tokens, cost_usd, tool_calls, cached, event_id, created_at)
    SELECT $3::uuid, $4::text, $5::text, $6::text, $7::text, $8::int, $9::int, $10::numeric,
           $11::jsonb, $12::boolean, event_id, now()
      FROM claimed
), finished AS (
    UPDATE jobs SET status = 'succeeded', finished_at = now(), error = NULL,
                    model = $7, provider = $6
     WHERE id = $3 AND EXISTS (SELECT 1 FROM claimed)
)
SELECT count(*) FROM claimed
"""

_FAIL = """
WITH claimed AS (
    INSERT INTO processed_events (consumer_group, event_id, processed_at)
    VALUES ($1, $2, now()) ON CONFLICT DO NOTHING RETURNING event_id
), failed AS (
    UPDATE jobs SET status = 'failed', finished_at = now(), error = $4
     WHERE id = $3 AND EXISTS (SELECT 1 FROM claimed)
)
SELECT count(*) FROM claimed
"""


async def start_job(db: Database, job: NewJob, provider: str | None) -> int:
    """Like mark_running, creating the row first when the ingress wrote none.

    Returns the attempt number; 0 when the job is already finished. The
    OpenAI-compatible routes leave the row to the worker, which keeps a
    database write off the request path. Not flushed to disk before it
    returns: until the job's outcome commits (durably, flushing this too) the
    event is not acknowledged, and its redelivery would write the row again.
    """
    pool = await db.pool(durable=False)
    attempts = await pool.fetchval(
        _START, job.id, job.tenant_id, job.api_key_id, job.user_id, job.kind, job.model,
        provider, _json(job.request), _json(job.metadata), job.request_event_id,
    )  # fmt: skip
    return int(attempts or 0)


async def complete_job(db: Database, group: str, event_id: uuid.UUID, result: Outcome) -> bool:
    """Store the result and claim the event in one statement; False if already done."""
    pool = await db.pool()
    claimed = await pool.fetchval(
        _COMPLETE, group, event_id, result.job_id, result.text, result.finish_reason,
        result.provider, result.model, result.input_tokens, result.output_tokens,
        result.cost_usd, None if result.tool_calls is None else _json(result.tool_calls),
        result.cached,
    )  # fmt: skip
    return bool(claimed)


async def fail_job(
    db: Database, group: str, event_id: uuid.UUID, job_id: uuid.UUID, error: str
) -> bool:
    pool = await db.pool()
    return bool(await pool.fetchval(_FAIL, group, event_id, job_id, error[:4000]))


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
