"""Job rows and results: created by the ingress, completed by model-calls."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.coalesce import Coalescer
from infra.db.engine import Database
from infra.db.idempotency import is_processed
from infra.db.models import Job, JobResult, utcnow

__all__ = [
    "JobWithResult",
    "JobWrites",
    "NewJob",
    "Outcome",
    "QueuedJobs",
    "delete_unpublished",
    "fail_job",
    "fail_unpublished",
    "get_job",
    "insert_job",
    "is_processed",
    "list_jobs",
    "mark_published",
    "mark_running",
]


Item = TypeVar("Item")


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
    # Of `input_tokens`: read from the vendor's prompt cache, and written to it (told to
    # the caller in usage; not stored: the cost already reflects them).
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    @classmethod
    def of(cls, row: JobResult) -> Outcome:
        return cls(
            row.job_id,
            row.text,
            row.finish_reason,
            row.provider,
            row.model,
            row.input_tokens,
            row.output_tokens,
            row.cost_usd,
            row.tool_calls,
            row.cached,
        )


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


async def fail_unpublished(
    db: Database, job_ids: Sequence[uuid.UUID], error: str
) -> list[uuid.UUID]:
    """Fails the jobs among `job_ids` still queued whose request never went out; their ids."""
    if not job_ids:
        return []
    async with db.transaction() as session:
        failed = await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == "queued", Job.published_at.is_(None))
            .values(status="failed", finished_at=utcnow(), error=error[:4000])
            .returning(Job.id)
        )
    return list(failed.scalars())


async def delete_unpublished(db: Database, job_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        await session.execute(delete(Job).where(Job.id == job_id))


async def get_job(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobWithResult | None:
    async with db.tenant_reads(tenant_id) as session:
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


async def list_jobs(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    user_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
) -> list[JobWithResult]:
    """A tenant's jobs, newest first (job ids are uuid7: time ordered), after the cursor."""
    query = (
        select(Job, JobResult)
        .outerjoin(JobResult, JobResult.job_id == Job.id)
        .where(Job.tenant_id == tenant_id)
    )
    if after is not None:
        query = query.where(Job.id < after)
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if since is not None:
        query = query.where(Job.created_at >= since)
    async with db.tenant_reads(tenant_id) as session:
        rows = (await session.execute(query.order_by(Job.id.desc()).limit(limit))).all()
    return [JobWithResult(job, result) for job, result in rows]


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


# Starts and completions of many concurrent calls go as one statement each
# (infra/coalesce.py): arrays in, one row per job out.
_START = """
INSERT INTO jobs (id, tenant_id, api_key_id, user_id, kind, model, provider, status, request,
                  metadata, attempts, request_event_id, created_at, started_at)
SELECT id, tenant_id, api_key_id, user_id, kind, model, provider, 'running', request::jsonb,
       metadata::jsonb, 1, request_event_id, now(), now()
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::uuid[])
       AS t(id, tenant_id, api_key_id, user_id, kind, model, provider, request, metadata,
            request_event_id)
ON CONFLICT (id) DO UPDATE
   SET status = 'running', provider = EXCLUDED.provider, attempts = jobs.attempts + 1,
       started_at = now()
 WHERE jobs.status IN ('queued', 'running')
RETURNING id, attempts
"""

# The ingress's new jobs, queued: the rows of many concurrent requests in one statement.
_QUEUE = """
INSERT INTO jobs (id, tenant_id, api_key_id, user_id, kind, model, status, request, metadata,
                  attempts, request_event_id, created_at)
SELECT id, tenant_id, api_key_id, user_id, kind, model, 'queued', request::jsonb,
       metadata::jsonb, 0, request_event_id, now()
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::uuid[])
       AS t(id, tenant_id, api_key_id, user_id, kind, model, request, metadata, request_event_id)
"""

# One statement claims the events and stores their effects: atomic without
# a BEGIN/COMMIT round trip each, and nothing happens for an event already
# claimed.
_COMPLETE = """
WITH input AS (
    SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::int[], $9::int[], $10::numeric[], $11::text[], $12::boolean[])
           AS t(event_id, job_id, text, finish_reason, provider, model, input_tokens,
                output_tokens, cost_usd, tool_calls, cached)
), claimed AS (
    INSERT INTO processed_events (consumer_group, event_id, processed_at)
    SELECT $1, event_id, now() FROM input ON CONFLICT DO NOTHING RETURNING event_id
), stored AS (
    INSERT INTO job_results (job_id, text, finish_reason, provider, model, input_tokens,
                             output_tokens, cost_usd, tool_calls, cached, event_id, created_at)
    SELECT i.job_id, i.text, i.finish_reason, i.provider, i.model, i.input_tokens,
           i.output_tokens, i.cost_usd, i.tool_calls::jsonb, i.cached, i.event_id, now()
      FROM input i JOIN claimed c USING (event_id)
), finished AS (
    UPDATE jobs SET status = 'succeeded', finished_at = now(), error = NULL,
                    model = i.model, provider = i.provider
      FROM input i JOIN claimed c USING (event_id)
     WHERE jobs.id = i.job_id
)
SELECT event_id FROM claimed
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


_IDENTITY = operator.attrgetter("id", "tenant_id", "api_key_id", "user_id", "kind", "model")


class QueuedJobs:
    """The ingress's new jobs without an Idempotency-Key (those with one: `insert_job`),
    written queued before their request is published; concurrent requests' rows go as one
    statement, a durable commit (the client is told its job exists)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._inserts: Coalescer[Job, None] = Coalescer(self._insert_many)

    async def insert(self, job: Job) -> None:
        await self._inserts.submit(job)

    async def _insert_many(self, jobs: list[Job]) -> list[None]:
        rows = [
            (*_IDENTITY(j), _json(j.request), _json(j.job_metadata), j.request_event_id)
            for j in jobs
        ]
        await (await self._db.pool()).execute(_QUEUE, *_columns(rows))
        return [None] * len(jobs)


class JobWrites:
    """A worker's job starts and completions, each kind batched across concurrent calls."""

    def __init__(self, db: Database, group: str) -> None:
        self._db = db
        self._group = group
        self._starts: Coalescer[tuple[NewJob, str | None], int] = Coalescer(self._start_many)
        self._completions: Coalescer[tuple[uuid.UUID, Outcome], bool] = Coalescer(
            self._complete_many
        )

    async def start(self, job: NewJob, provider: str | None) -> int:
        """Status running, one more attempt; creates the row when the ingress wrote none.

        Returns the attempt number; 0 when the job is already finished. The
        ingress writes the row before it publishes (producers.ingress.submission);
        an event from another producer may come without one. Not flushed to disk before it
        returns: until the job's outcome commits (durably, flushing this too)
        the event is not acknowledged, and its redelivery writes the row again.
        """
        return await self._starts.submit((job, provider))

    async def complete(self, event_id: uuid.UUID, result: Outcome) -> bool:
        """Store the result and claim the event, atomically; False if already done."""
        return await self._completions.submit((event_id, result))

    async def _start_many(self, items: list[tuple[NewJob, str | None]]) -> list[int]:
        first, again = _split_repeats(items, lambda item: item[0].id)
        pool = await self._db.pool(durable=False)
        rows = await pool.fetch(
            _START,
            *_columns(
                [
                    (
                        j.id,
                        j.tenant_id,
                        j.api_key_id,
                        j.user_id,
                        j.kind,
                        j.model,
                        provider,
                        _json(j.request),
                        _json(j.metadata),
                        j.request_event_id,
                    )
                    for j, provider in (items[i] for i in first)
                ]
            ),
        )
        attempts = {row["id"]: int(row["attempts"]) for row in rows}
        results = [attempts.get(job.id, 0) for job, _ in items]
        if again:  # the same job twice in one batch: the repeat goes after the first
            for i, attempt in zip(
                again, await self._start_many([items[i] for i in again]), strict=True
            ):
                results[i] = attempt
        return results

    async def _complete_many(self, items: list[tuple[uuid.UUID, Outcome]]) -> list[bool]:
        first, _ = _split_repeats(items, lambda item: item[0])
        pool = await self._db.pool()
        rows = await pool.fetch(
            _COMPLETE,
            self._group,
            *_columns(
                [
                    (
                        event_id,
                        r.job_id,
                        r.text,
                        r.finish_reason,
                        r.provider,
                        r.model,
                        r.input_tokens,
                        r.output_tokens,
                        r.cost_usd,
                        None if r.tool_calls is None else _json(r.tool_calls),
                        r.cached,
                    )
                    for event_id, r in (items[i] for i in first)
                ]
            ),
        )
        claimed = {row["event_id"] for row in rows}
        # A repeat of an event in the same batch is its redelivery: the first claims it.
        firsts = set(first)
        return [i in firsts and event_id in claimed for i, (event_id, _) in enumerate(items)]


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def _split_repeats(items: list[Item], key: Callable[[Item], object]) -> tuple[list[int], list[int]]:
    """Indexes of first occurrences and of repeats: one statement may touch a row once."""
    seen: set[object] = set()
    first: list[int] = []
    again: list[int] = []
    for i, item in enumerate(items):
        (again if key(item) in seen else first).append(i)
        seen.add(key(item))
    return first, again


async def fail_job(
    db: Database, group: str, event_id: uuid.UUID, job_id: uuid.UUID, error: str
) -> bool:
    pool = await db.pool()
    return bool(await pool.fetchval(_FAIL, group, event_id, job_id, error[:4000]))


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
