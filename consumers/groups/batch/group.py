"""The batch group: fans batch files out into chat jobs, counts them, writes the results.

Events come in lists (`Batches`, one poll at a time): the outcomes of a poll are
counted in one transaction, and each batch announces its progress once per
poll, not once per line. The lines' jobs go to `ai.job.requested.batch`, a
lane of its own that the `model-calls-batch` group serves with a small
concurrency, so batches never queue in front of interactive jobs.

Crash safety: job ids and request event ids are derived from (batch, line),
so re-publishing after a crash is deduplicated by the lane; a line is
counted by a conditional update (pending -> succeeded/failed), never twice;
finalization is retried by any redelivered event of a batch whose lines are
all done (and by the expiry sweep for expired batches), and its files have
derived ids.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from consumers.jobs.ports import JobPorts
from infra.budget_holds import BudgetHolds
from infra.channels import batch_progress_feed
from infra.db import batch_progress
from infra.db import batches as batch_store
from infra.db.models import Batch, utcnow
from infra.errors import PermanentError
from infra.files import FileStore
from infra.kafka.group import Group
from infra.kafka.policies import Batches
from infra.routing.catalog import ModelCatalog
from schemas import batches as batch_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import derived_id
from schemas.versions import job_requested

from .budget import admit, release
from .lines import parse_input
from .results import write_results

log = logging.getLogger(__name__)

PUBLISH_CHUNK = 1000


@dataclass(frozen=True)
class Ports(JobPorts):
    files: FileStore
    holds: BudgetHolds
    catalog: ModelCatalog  # the models a line may name, and their prices


group: Group[Ports] = Group(
    "batch",
    [topics.BATCH_REQUESTED.name, topics.AI_JOB_LIFECYCLE.name],
    lambda settings: Batches(settings.batch_progress_max),
)
SYSTEM = Actor(kind="system", id=group.name)


@group.on(batch_events.BATCH_CREATED, batch_events.BatchCreated, batch=True)
async def on_created(events: list[Envelope[batch_events.BatchCreated]], ports: Ports) -> None:
    for event in events:
        await handle_created(event.payload, event.id, ports)


@group.gives_up(batch_events.BATCH_CREATED)
async def created_given_up(
    event: Envelope[batch_events.BatchCreated], reason: str, ports: Ports
) -> None:
    batch = await batch_store.get_batch(ports.db, event.payload.batch_id)
    if batch is not None:
        internal = batch_events.LineError(code="internal_error", param=None, message=reason)
        await _refuse(batch, [internal], ports)


@group.on(batch_events.BATCH_CANCEL_REQUESTED, batch_events.BatchCancelRequested, batch=True)
async def on_cancel(
    events: list[Envelope[batch_events.BatchCancelRequested]], ports: Ports
) -> None:
    for event in events:
        await handle_cancel(event.payload.batch_id, ports)


@group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded, batch=True)
async def on_succeeded(events: list[Envelope[job_events.JobSucceeded]], ports: Ports) -> None:
    await handle_outcomes([e.payload.job_id for e in events], [], ports)


@group.on(job_events.JOB_FAILED, job_events.JobFailed, batch=True)
async def on_failed(events: list[Envelope[job_events.JobFailed]], ports: Ports) -> None:
    await handle_outcomes([], [e.payload.job_id for e in events], ports)


def counts(batch: Batch) -> dict[str, int]:
    # OpenAI counts cancelled requests as neither completed nor failed.
    return {"total": batch.total, "completed": batch.completed, "failed": batch.failed}


async def _announce(ports: Ports, batch: Batch, type_: str = "status") -> None:
    data: dict[str, Any] = {"status": batch.status, "request_counts": counts(batch)}
    # A user's batch also tells the user's feed, in the same script call.
    public_id = batch_events.batch_public_id(batch.id)
    feed = batch_progress_feed(batch.tenant_id, batch.user_id, public_id, data)
    await ports.streams.append(batch.id, type_, data, also=feed)


async def handle_created(event: batch_events.BatchCreated, cause: uuid.UUID, ports: Ports) -> None:
    batch = await batch_store.get_batch(ports.db, event.batch_id)
    if batch is None:
        raise PermanentError(f"no batch {event.batch_id}")
    if batch.in_progress_at is None and batch.status in ("validating", "cancelling"):
        batch = await _validate_and_store(batch, event, ports)
        if batch is None:
            return
    if batch.status == "in_progress":
        await _publish_pending(batch, cause, ports)
    elif batch.status == "cancelling":
        await handle_cancel(batch.id, ports)
    else:
        await _finalize_if_done(batch, ports)


async def _validate_and_store(
    batch: Batch, event: batch_events.BatchCreated, ports: Ports
) -> Batch | None:
    settings = ports.settings
    stored = await batch_store.get_file(ports.db, batch.tenant_id, batch.input_file_id)
    if stored is None:
        missing = batch_events.LineError(
            code="invalid_file", param="input_file_id", message="the input file no longer exists"
        )
        await _refuse(batch, [missing], ports)
        return None
    data = await ports.files.get(stored.storage_key)
    requests, errors = parse_input(
        data,
        endpoint=batch.endpoint,
        max_requests=settings.batch_max_requests,
        max_bytes=settings.batch_max_bytes,
        models=ports.catalog,
        user_id=batch.user_id,
    )
    if errors:
        await _refuse(batch, errors, ports)
        return None
    jobs, lines = [], []
    public_id = batch_events.batch_public_id(batch.id)
    for request in requests:
        job_id = derived_id(batch.id, f"line:{request.line_no}")
        jobs.append(
            {
                "id": job_id,
                "tenant_id": batch.tenant_id,
                "api_key_id": event.api_key_id,
                "user_id": request.job.user_id,
                "kind": request.job.kind,
                "model": request.job.model,
                "status": "queued",
                "request": request.job.model_dump(mode="json"),
                "metadata": {**request.job.metadata, "batch_id": public_id},
                "request_event_id": derived_id(job_id, "requested"),
                "attempts": 0,
                "created_at": batch.created_at,
            }
        )
        lines.append(
            {
                "job_id": job_id,
                "batch_id": batch.id,
                "line_no": request.line_no,
                "custom_id": request.custom_id,
                "status": "pending",
            }
        )
    started = await batch_store.add_lines(ports.db, batch.id, jobs, lines)
    if started is None:  # cancelled and finished meanwhile
        return None
    await _announce(ports, started)
    return started


async def _refuse(batch: Batch, errors: list[batch_events.LineError], ports: Ports) -> None:
    if batch.status in ("validating", "cancelling"):
        await _tell_done(ports, batch, "failed")
    failed = await batch_store.set_status(
        ports.db,
        batch.id,
        "failed",
        only_from=("validating", "cancelling"),
        errors=[e.model_dump() for e in errors],
    )
    if failed is not None:
        await _announce(ports, failed)
        await ports.streams.append(batch.id, "done", {"status": "failed"})


async def _publish_pending(batch: Batch, cause: uuid.UUID, ports: Ports) -> None:
    """Publishes the lines not finished yet; after a crash only those are sent again."""
    pending = await batch_store.pending_lines(ports.db, batch.id)
    for start in range(0, len(pending), PUBLISH_CHUNK):
        chunk = pending[start : start + PUBLISH_CHUNK]
        jobs = [job_events.ChatJob.model_validate(line.request) for line in chunk]
        refusals = await admit(batch, chunk, jobs, ports.holds, ports.catalog, ports.settings)
        if refusals:
            refused = [(r.job_id, r.message) for r in refusals]
            counted = await batch_store.refuse_lines(ports.db, batch.id, refused)
            if counted is not None:
                batch = counted
                await _announce(ports, batch, "progress")
        skip = {r.job_id for r in refusals}
        items = []
        for line, job in zip(chunk, jobs, strict=True):
            if line.job_id in skip:
                continue
            payload = job_events.JobRequested(
                job_id=line.job_id, api_key_id=line.api_key_id, job=job
            )
            envelope = job_requested(
                payload, batch.tenant_id, SYSTEM, event_id=line.request_event_id, causation_id=cause
            )
            items.append((topics.AI_JOB_REQUESTED_BATCH.name, envelope))
        await ports.publisher.publish_many(items)
    await _finalize_if_done(batch, ports)


async def handle_cancel(batch_id: Any, ports: Ports) -> None:
    batch = await batch_store.get_batch(ports.db, batch_id)
    if batch is None or batch.status != "cancelling" or batch.in_progress_at is None:
        return  # a batch still validating is cancelled once its lines are stored
    batch, cancelled = await batch_store.cancel_pending(ports.db, batch_id)
    if batch is not None:
        await release(batch, cancelled, ports.holds)
        await _announce(ports, batch, "progress")
        await _finalize_if_done(batch, ports)


async def handle_outcomes(
    succeeded: list[uuid.UUID], failed: list[uuid.UUID], ports: Ports
) -> None:
    counted = await batch_progress.record_outcomes(ports.db, succeeded, failed)
    for batch in counted.moved:
        await _announce(ports, batch, "progress")
        await _finalize_if_done(batch, ports)
    # Lines counted before: a redelivery may follow a crash that came before
    # finalization, so look again.
    for batch_id in counted.seen_before:
        found = await batch_store.get_batch(ports.db, batch_id)
        if found is not None:
            await _finalize_if_done(found, ports)


@group.every(lambda settings: settings.batch_expiry_check_s)
async def expire_due(ports: Ports) -> None:
    """Batches past their completion window end as `expired`: what finished stays."""
    for batch_id in await batch_progress.due_to_expire(ports.db, utcnow()):
        expired = await batch_progress.expire(ports.db, batch_id)
        batch = expired[0] if expired else await batch_store.get_batch(ports.db, batch_id)
        if expired is not None:
            stopped, job_ids = expired
            log.info("batch %s expired with %d lines not run", batch_id, len(job_ids))
            await release(stopped, job_ids, ports.holds)
            await _announce(ports, stopped)
        if batch is not None:
            await _finalize_if_done(batch, ports)


async def _finalize_if_done(batch: Batch, ports: Ports) -> None:
    if batch.status not in batch_store.OPEN or batch.in_progress_at is None:
        return
    if batch.completed + batch.failed + batch.cancelled < batch.total:
        return
    if batch.status == "in_progress":
        moved = await batch_store.set_status(
            ports.db, batch.id, "finalizing", only_from=("in_progress",)
        )
        if moved is not None:
            await _announce(ports, moved)
    output_id, error_id = await write_results(
        ports.db, ports.files, batch.tenant_id, batch.id, batch.user_id
    )
    current = await batch_store.get_batch(ports.db, batch.id) or batch
    final = (
        "expired" if current.expired_at else "cancelled" if current.cancelling_at else "completed"
    )
    if current.status in ("finalizing", "cancelling"):
        await _tell_done(ports, current, final, output_id, error_id)
    done = await batch_store.set_status(
        ports.db,
        batch.id,
        final,
        only_from=("finalizing", "cancelling"),
        output_file_id=output_id,
        error_file_id=error_id,
    )
    if done is not None:
        await _announce(ports, done)
        await ports.streams.append(batch.id, "done", {"status": final})


async def _tell_done(
    ports: Ports,
    batch: Batch,
    status: Any,
    output_id: uuid.UUID | None = None,
    error_id: uuid.UUID | None = None,
) -> None:
    """`batch.completed`, published before the final status is stored and under an id
    derived from the batch: a crash between the two publishes it again, and the copies
    dedupe downstream."""
    event = batch_events.BatchCompleted(
        batch_id=batch_events.batch_public_id(batch.id),
        status=status,
        request_counts=counts(batch),
        output_file_id=batch_events.file_public_id(output_id) if output_id else None,
        error_file_id=batch_events.file_public_id(error_id) if error_id else None,
        user_id=batch.user_id,
    )
    await ports.publisher.publish(
        topics.BATCH_EVENTS.name,
        Envelope(
            id=derived_id(batch.id, "completed"),
            type=batch_events.BATCH_COMPLETED,
            tenant_id=batch.tenant_id,
            actor=SYSTEM,
            correlation_id=batch.id,
            payload=event,
        ),
    )
