"""Connections (sealed credentials) and the attempts of connector actions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.idempotency import claim
from infra.db.integration_models import ActionAttempt, Connection
from infra.db.models import Job, JobResult, utcnow


def connection_context(connection: Connection) -> bytes:
    """Associated data of a connection's sealed credentials: they open on this row only."""
    return b"connection:" + connection.id.bytes + connection.tenant_id.bytes


async def add_connection(db: Database, connection: Connection) -> None:
    await db.add(connection)


async def get_connection(
    db: Database, tenant_id: uuid.UUID, connection_id: uuid.UUID
) -> Connection | None:
    """The tenant's live connection; a deleted one is not found (see `was_deleted`)."""
    found = await db.get(Connection, connection_id, tenant_id)
    return found if found is not None and found.status == "active" else None


async def was_deleted(db: Database, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """Whether the tenant had this connection and deleted it (to say so, not "no such")."""
    found = await db.get(Connection, connection_id, tenant_id)
    return found is not None and found.status == "deleted"


async def list_connections(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    connector: str | None = None,
) -> list[Connection]:
    """The tenant's live connections, newest first (ids are uuid7), after the cursor."""
    query = select(Connection).where(
        Connection.tenant_id == tenant_id, Connection.status == "active"
    )
    if connector is not None:
        query = query.where(Connection.connector == connector)
    if after is not None:
        query = query.where(Connection.id < after)
    async with db.tenant_reads(tenant_id) as session:
        found = await session.execute(query.order_by(Connection.id.desc()).limit(limit))
        return list(found.scalars())


async def update_connection(
    db: Database, tenant_id: uuid.UUID, connection_id: uuid.UUID, values: dict[str, Any]
) -> Connection | None:
    """Changes a live connection (its name, or its sealed credentials with `rotated_at`)."""
    async with db.transaction() as session:
        found = await session.execute(
            update(Connection)
            .where(
                Connection.id == connection_id,
                Connection.tenant_id == tenant_id,
                Connection.status == "active",
            )
            .values(**values, updated_at=utcnow())
            .returning(Connection)
        )
        return found.scalars().first()


async def mark_deleted(db: Database, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """The connection is deleted: its sealed credentials are wiped, its row stays (jobs name
    it) so that an action on it fails saying it was deleted. False when it was not live."""
    now = utcnow()
    async with db.transaction() as session:
        found = await session.execute(
            update(Connection)
            .where(
                Connection.id == connection_id,
                Connection.tenant_id == tenant_id,
                Connection.status == "active",
            )
            .values(status="deleted", key_id="", sealed=b"", deleted_at=now, updated_at=now)
            .returning(Connection.id)
        )
        return found.first() is not None


async def touch_connection(db: Database, connection_id: uuid.UUID) -> None:
    """Note that an action is about to run on the connection (`last_used_at`)."""
    async with db.transaction(durable=False) as session:
        await session.execute(
            update(Connection).where(Connection.id == connection_id).values(last_used_at=utcnow())
        )


BeginOutcome = Literal["call", "done", "in_doubt", "busy"]


@dataclass(frozen=True)
class Begun:
    outcome: BeginOutcome
    attempt: ActionAttempt | None


async def begin_attempt(
    db: Database, job_id: uuid.UUID, event_id: uuid.UUID, lease_s: float
) -> Begun:
    """Record that we are about to call the vendor, before calling it.

    "call": go ahead (first delivery). "done": finished before, do not call.
    "busy": another delivery holds the lease and is calling right now.
    "in_doubt": an earlier call started and never reported back (its worker
    died): the vendor may have acted, so calling again could act twice.
    """
    now = utcnow()
    lease = now + timedelta(seconds=lease_s)
    async with db.transaction() as session:
        inserted = (
            await session.execute(
                insert(ActionAttempt)
                .values(
                    job_id=job_id,
                    event_id=event_id,
                    status="calling",
                    calls=1,
                    lease_until=lease,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
                .returning(ActionAttempt.job_id)
            )
        ).first()
        if inserted is not None:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(status="running", started_at=now, attempts=Job.attempts + 1)
            )
            return Begun("call", None)
        attempt = (
            await session.execute(
                select(ActionAttempt).where(ActionAttempt.job_id == job_id).with_for_update()
            )
        ).scalar_one()
    if attempt.status in ("succeeded", "failed"):
        return Begun("done", attempt)
    if attempt.lease_until is not None and attempt.lease_until > now:
        return Begun("busy", attempt)
    return Begun("in_doubt", attempt)


async def finish_attempt(
    db: Database,
    group: str,
    event_id: uuid.UUID,
    result: JobResult | None,
    *,
    job_id: uuid.UUID,
    payload: dict[str, Any] | None,
    error: str | None,
) -> bool:
    """Store the outcome and claim the event in one transaction; False if already done."""
    now = utcnow()
    status = "succeeded" if error is None else "failed"
    async with db.transaction() as session:
        if not await claim(session, group, event_id):
            return False
        await session.execute(
            update(ActionAttempt)
            .where(ActionAttempt.job_id == job_id)
            .values(status=status, result=payload, error=error, lease_until=None, updated_at=now)
        )
        if result is not None:
            session.add(result)
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=status, finished_at=now, error=error[:4000] if error else None)
        )
    return True


def action_job(
    *,
    job_id: uuid.UUID,
    tenant_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    connector: str,
    action: str,
    request: dict[str, Any],
    event_id: uuid.UUID,
    idempotency_key: str | None = None,
) -> Job:
    """The job row of a connector action: same table, API and stream as AI jobs."""
    return Job(
        id=job_id,
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        kind="action",
        model=f"{connector}.{action}",
        provider=connector,
        status="queued",
        request=request,
        idempotency_key=idempotency_key,
        request_event_id=event_id,
    )
