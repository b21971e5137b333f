"""The jobs projection written from events alone (replay), and snapshots to compare.

Live, the ingress and model-calls write these rows as they work; a rebuild
replays their events through these functions into an empty database. The
snapshot leaves out what events do not carry: row timestamps of the live
path and the client's idempotency key.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.idempotency import claim
from infra.db.models import ApiKey, Job, JobResult, Tenant
from infra.db.snapshots import plain

JOB_FIELDS = (
    "id",
    "tenant_id",
    "api_key_id",
    "user_id",
    "kind",
    "model",
    "provider",
    "status",
    "request",
    "job_metadata",
    "error",
    "attempts",
    "request_event_id",
)
RESULT_FIELDS = (
    "job_id",
    "text",
    "finish_reason",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "event_id",
)


async def _claimed(db: Database, group: str, event_id: uuid.UUID, *statements: Any) -> None:
    """Run the statements in one transaction with the claim of the event; none if it was
    already claimed (a redelivery)."""
    async with db.transaction() as session:
        if not await claim(session, group, event_id):
            return
        for statement in statements:
            await session.execute(statement)


async def job_requested(db: Database, group: str, event_id: uuid.UUID, job: Job) -> None:
    values = job.model_dump(by_alias=False)
    values["metadata"] = values.pop("job_metadata")
    await _claimed(db, group, event_id, insert(Job).values(**values).on_conflict_do_nothing())


async def job_started(
    db: Database, group: str, event_id: uuid.UUID, job_id: uuid.UUID, provider: str, at: datetime
) -> None:
    started = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")))
        .values(status="running", provider=provider, attempts=Job.attempts + 1, started_at=at)
    )
    await _claimed(db, group, event_id, started)


async def job_succeeded(
    db: Database, group: str, event_id: uuid.UUID, result: JobResult, at: datetime
) -> None:
    await _claimed(
        db,
        group,
        event_id,
        insert(JobResult).values(**result.model_dump()).on_conflict_do_nothing(),
        update(Job)
        .where(Job.id == result.job_id)
        .values(status="succeeded", finished_at=at, error=None, model=result.model),
    )


async def job_failed(
    db: Database, group: str, event_id: uuid.UUID, job_id: uuid.UUID, error: str, at: datetime
) -> None:
    failed = {"status": "failed", "finished_at": at, "error": error[:4000]}
    await _claimed(db, group, event_id, update(Job).where(Job.id == job_id).values(failed))


async def snapshot(db: Database, tenant_ids: Sequence[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """The comparable jobs and results rows of these tenants, keyed by table:job id."""
    rows: dict[str, dict[str, Any]] = {}
    async with db.session() as session:
        jobs = await session.execute(select(Job).where(Job.tenant_id.in_(tenant_ids)))
        for job in jobs.scalars():
            rows[f"jobs:{job.id}"] = {f: plain(getattr(job, f)) for f in JOB_FIELDS}
        results = await session.execute(
            select(JobResult)
            .join(Job, Job.id == JobResult.job_id)
            .where(Job.tenant_id.in_(tenant_ids))
        )
        for result in results.scalars():
            rows[f"job_results:{result.job_id}"] = {
                f: plain(getattr(result, f)) for f in RESULT_FIELDS
            }
    return rows


async def copy_reference_rows(
    source: Database, target: Database, tenant_ids: Sequence[uuid.UUID]
) -> None:
    """Tenants and API keys are not event-sourced: a rebuild database needs them first."""
    async with source.session() as session:
        tenants = list(
            (await session.execute(select(Tenant).where(Tenant.id.in_(tenant_ids)))).scalars()
        )
        keys = list(
            (
                await session.execute(select(ApiKey).where(ApiKey.tenant_id.in_(tenant_ids)))
            ).scalars()
        )
    async with target.transaction() as session:
        for tenant in tenants:
            await session.execute(
                insert(Tenant).values(**tenant.model_dump()).on_conflict_do_nothing()
            )
        for key in keys:
            await session.execute(
                insert(ApiKey).values(**key.model_dump()).on_conflict_do_nothing()
            )
