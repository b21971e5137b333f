"""The job-projection group: the jobs and results rows, rebuilt from events alone.

Runs only in replay (`ayush replay --into-group job-projection`): live, the
ingress and model-calls write these rows. It never calls a provider: the
answer is in ai.job.succeeded since version 2. Idempotent by event id.
"""

from __future__ import annotations

from decimal import Decimal

from consumers.jobs.requests import queued_job
from infra.db import projection
from infra.db.engine import Database
from infra.db.models import JobResult
from infra.kafka.group import Group
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Envelope

group: Group[Database] = Group(
    "job-projection",
    [topics.AI_JOB_REQUESTED.name, topics.AI_JOB_LIFECYCLE.name],
    replay_only=True,
)


@group.on(job_events.JOB_REQUESTED, job_events.JobRequested)
async def on_requested(raw: Envelope[job_events.JobRequested], db: Database) -> None:
    job = queued_job(raw)
    await projection.job_requested(db, group.name, raw.id, job)


@group.on(job_events.JOB_STARTED, job_events.JobStarted)
async def on_started(raw: Envelope[job_events.JobStarted], db: Database) -> None:
    started = raw.payload
    await projection.job_started(
        db, group.name, raw.id, started.job_id, started.provider, raw.occurred_at
    )


@group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded)
async def on_succeeded(raw: Envelope[job_events.JobSucceeded], db: Database) -> None:
    done = raw.payload
    result = JobResult(
        job_id=done.job_id,
        text=done.text or "",
        finish_reason=done.finish_reason,
        provider=done.provider,
        model=done.model,
        input_tokens=done.usage.input_tokens,
        output_tokens=done.usage.output_tokens,
        cost_usd=done.cost_usd if done.cost_usd is not None else Decimal("0"),
        # live, a result names the request event it answers
        event_id=raw.causation_id or raw.id,
        created_at=raw.occurred_at,
    )
    await projection.job_succeeded(db, group.name, raw.id, result, raw.occurred_at)


@group.on(job_events.JOB_FAILED, job_events.JobFailed)
async def on_failed(raw: Envelope[job_events.JobFailed], db: Database) -> None:
    failed = raw.payload
    await projection.job_failed(
        db, group.name, raw.id, failed.job_id, failed.error, raw.occurred_at
    )
