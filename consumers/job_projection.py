"""The job-projection group: the jobs and results rows, rebuilt from events alone.

| topic            | event type       | handler        |
|------------------|------------------|----------------|
| ai.job.requested | ai.job.requested | on_requested   |
| ai.job.lifecycle | ai.job.started   | on_started     |
| ai.job.lifecycle | ai.job.succeeded | on_succeeded   |
| ai.job.lifecycle | ai.job.failed    | on_failed      |

Runs only in replay (`ayush replay --into-group job-projection`): live, the
ingress and model-calls write these rows. It never calls a provider: the
answer is in ai.job.succeeded since version 2. Idempotent by event id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from infra.db import projection
from infra.db.engine import Database
from infra.db.models import Job, JobResult
from infra.kafka.routes import Route
from schemas import jobs as ev
from schemas import topics
from schemas.envelope import RawEnvelope

GROUP = "job-projection"
TOPICS = [topics.AI_JOB_REQUESTED.name, topics.AI_JOB_LIFECYCLE.name]


@dataclass(frozen=True)
class Ports:
    db: Database


def handlers(ports: Ports) -> Mapping[str, Route]:
    async def on_requested(raw: RawEnvelope) -> None:
        request = ev.JobRequested.model_validate(raw.payload)
        job = Job(
            id=request.job_id,
            tenant_id=raw.tenant_id,
            api_key_id=request.api_key_id,
            user_id=request.job.user_id,
            kind=request.job.kind,
            model=request.job.model,
            status="queued",
            request=request.job.model_dump(mode="json"),
            job_metadata=dict(request.job.metadata),
            request_event_id=raw.id,
            created_at=raw.occurred_at,
        )
        await projection.job_requested(ports.db, GROUP, raw.id, job)

    async def on_started(raw: RawEnvelope) -> None:
        started = ev.JobStarted.model_validate(raw.payload)
        await projection.job_started(
            ports.db, GROUP, raw.id, started.job_id, started.provider, raw.occurred_at
        )

    async def on_succeeded(raw: RawEnvelope) -> None:
        done = ev.JobSucceeded.model_validate(raw.payload)
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
        await projection.job_succeeded(ports.db, GROUP, raw.id, result, raw.occurred_at)

    async def on_failed(raw: RawEnvelope) -> None:
        failed = ev.JobFailed.model_validate(raw.payload)
        await projection.job_failed(
            ports.db, GROUP, raw.id, failed.job_id, failed.error, raw.occurred_at
        )

    return {
        ev.JOB_REQUESTED: Route(on_requested),
        ev.JOB_STARTED: Route(on_started),
        ev.JOB_SUCCEEDED: Route(on_succeeded),
        ev.JOB_FAILED: Route(on_failed),
    }
