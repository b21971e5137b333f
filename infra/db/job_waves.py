"""Job rows started and finished many at a time: the batch lane's writes.

The same effects as jobs.start_job / complete_job / fail_job, in one statement
or one transaction per wave of jobs instead of one per job. Each event is
still claimed in the transaction of its effects, so a redelivered wave
changes nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.models import Job, JobResult, ProcessedEvent, utcnow

JOBS = Job.__table__
RESULTS = JobResult.__table__


@dataclass(frozen=True)
class Failure:
    event_id: uuid.UUID
    job_id: uuid.UUID
    error: str


async def start_jobs(
    db: Database, providers: dict[uuid.UUID, str | None], row: Callable[[uuid.UUID], Job]
) -> dict[uuid.UUID, int]:
    """Marks these jobs (id -> provider) running; their attempt numbers. Finished
    jobs are left alone and are absent from the answer.

    Rows the fan-out wrote are updated in place (one statement per provider);
    only jobs with no row at all are inserted, as `row` builds them.
    """
    if not providers:
        return {}
    now = utcnow()
    by_provider: dict[str | None, list[uuid.UUID]] = {}
    for job_id, provider in providers.items():
        by_provider.setdefault(provider, []).append(job_id)
    attempts: dict[uuid.UUID, int] = {}
    async with db.transaction() as session:
        for provider, ids in by_provider.items():
            rows = await session.execute(
                update(JOBS)
                .where(JOBS.c.id.in_(ids), JOBS.c.status.in_(("queued", "running")))
                .values(
                    status="running",
                    provider=provider,
                    attempts=JOBS.c.attempts + 1,
                    started_at=now,
                )
                .returning(JOBS.c.id, JOBS.c.attempts)
            )
            attempts.update((row[0], int(row[1])) for row in rows)
        rest = [job_id for job_id in providers if job_id not in attempts]
        if rest:
            found = await session.execute(select(JOBS.c.id).where(JOBS.c.id.in_(rest)))
            missing = set(rest) - set(found.scalars())
            if missing:
                new_rows = []
                for job_id in missing:
                    values = row(job_id).model_dump(by_alias=False)
                    values["metadata"] = values.pop("job_metadata")
                    values.update(
                        status="running", provider=providers[job_id], attempts=1, started_at=now
                    )
                    new_rows.append(values)
                inserted = await session.execute(
                    insert(JOBS).values(new_rows).on_conflict_do_nothing().returning(JOBS.c.id)
                )
                attempts.update((job_id, 1) for job_id in inserted.scalars())
    return attempts


async def finish_jobs(
    db: Database, group: str, results: Sequence[JobResult], failures: Sequence[Failure]
) -> set[uuid.UUID]:
    """Stores results and failures, claiming their events; the event ids claimed now.

    An event claimed before (a redelivered wave) keeps its first outcome.
    """
    events = [r.event_id for r in results] + [f.event_id for f in failures]
    if not events:
        return set()
    now = utcnow()
    async with db.transaction() as session:
        claimed = set(
            (
                await session.execute(
                    insert(ProcessedEvent)
                    .values(
                        [
                            {"consumer_group": group, "event_id": e, "processed_at": now}
                            for e in events
                        ]
                    )
                    .on_conflict_do_nothing()
                    .returning(ProcessedEvent.event_id)
                )
            ).scalars()
        )
        won = [r for r in results if r.event_id in claimed]
        if won:
            await session.execute(
                insert(RESULTS).values([r.model_dump() for r in won]).on_conflict_do_nothing()
            )
            await session.execute(
                update(JOBS)
                .where(JOBS.c.id == bindparam("b_id"))
                .values(
                    status="succeeded",
                    finished_at=now,
                    error=None,
                    model=bindparam("b_model"),
                    provider=bindparam("b_provider"),
                ),
                [{"b_id": r.job_id, "b_model": r.model, "b_provider": r.provider} for r in won],
            )
        lost = [f for f in failures if f.event_id in claimed]
        if lost:
            await session.execute(
                update(JOBS)
                .where(JOBS.c.id == bindparam("b_id"))
                .values(status="failed", finished_at=now, error=bindparam("b_error")),
                [{"b_id": f.job_id, "b_error": f.error[:4000]} for f in lost],
            )
    return claimed


async def finished(
    db: Database, job_ids: Sequence[uuid.UUID]
) -> list[tuple[Job, JobResult | None]]:
    """The finished jobs among `job_ids`, with their results."""
    if not job_ids:
        return []
    async with db.session() as session:
        rows = await session.execute(
            select(Job, JobResult)
            .outerjoin(JobResult, JobResult.job_id == Job.id)
            .where(Job.id.in_(job_ids), Job.status.in_(("succeeded", "failed")))
        )
        return [(row[0], row[1]) for row in rows]
