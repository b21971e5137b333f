"""Event schema versions and the upcasters that bring old payloads up to date.

An event is stored as it was written. Readers upcast it step by step
(v1 -> v2 -> ...) to the version their model expects, so an old event still
replays (eventsourcing's `upcast_v1_v2`). The upcasters live beside their
model; this table only lists them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from schemas import jobs
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.ids import derived_id, uuid7

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# event type -> its payload model. A type not listed here is at version 1.
MODELS: dict[str, type[BaseModel]] = {
    jobs.JOB_REQUESTED: jobs.JobRequested,
    jobs.JOB_STARTED: jobs.JobStarted,
    jobs.JOB_RETRYING: jobs.JobRetrying,
    jobs.JOB_SUCCEEDED: jobs.JobSucceeded,
    jobs.JOB_FAILED: jobs.JobFailed,
    jobs.USAGE_RECORDED: jobs.UsageRecorded,
}

# (event type, from version) -> upcaster to from version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    (jobs.JOB_SUCCEEDED, 1): jobs.JobSucceeded.upcast_v1_v2,
}


def current_version(event_type: str) -> int:
    model = MODELS.get(event_type)
    return int(getattr(model, "SCHEMA_VERSION", 1)) if model is not None else 1


def schema_version(payload: BaseModel) -> int:
    """The version to stamp on a new event carrying this payload."""
    return int(getattr(type(payload), "SCHEMA_VERSION", 1))


def follow_up(
    cause: Envelope[Any],
    type_: str,
    payload: BaseModel,
    purpose: str,
    actor: Actor,
    *,
    correlation_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """An event that `cause` led to. Its id is derived from the cause and `purpose`,
    so publishing it again after a crash is the same event.

    It stays in the cause's correlation and tenant unless told otherwise: a job
    that a webhook starts is correlated by that job, a memory command by its user.
    """
    return Envelope[Any](
        id=derived_id(cause.id, purpose),
        type=type_,
        version=schema_version(payload),
        tenant_id=cause.tenant_id if tenant_id is None else tenant_id,
        actor=actor,
        correlation_id=cause.correlation_id if correlation_id is None else correlation_id,
        causation_id=cause.id,
        payload=payload,
    )


def upcast(raw: RawEnvelope) -> RawEnvelope:
    """The same event with its payload at the current version of its type."""
    target = current_version(raw.type)
    if raw.version >= target:
        return raw
    payload, version = dict(raw.payload), raw.version
    while version < target:
        step = UPCASTERS.get((raw.type, version))
        if step is None:
            raise ValueError(f"no upcaster for {raw.type} v{version}")
        payload, version = step(payload), version + 1
    return raw.model_copy(update={"payload": payload, "version": version})


def job_requested(
    request: jobs.JobRequested,
    tenant_id: uuid.UUID,
    actor: Actor,
    *,
    event_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """The `ai.job.requested` envelope of a job, whoever submits it (an API route, the batch
    fan-out, a webhook rule), correlated by the job's own id. `event_id`: the id the job's row
    recorded (a publish again reuses it, and consumers dedupe it), else a new one."""
    return Envelope[Any](
        id=event_id or uuid7(),
        type=jobs.JOB_REQUESTED,
        version=schema_version(request),
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=request.job_id,
        causation_id=causation_id,
        payload=request,
    )
