"""The one way a job is submitted, whatever the route: POST /v1/jobs and the
OpenAI-compatible routes (`/v1/chat/completions`, `/v1/embeddings`) call `submit`.

`submit` admits the job (its model, tokens per minute, a budget hold under the job's
id), writes the job's row, publishes its `ai.job.requested` event
(`schemas.versions.job_requested`, the envelope every producer of jobs builds) and
returns its id. Whatever stops it raises one family, `SubmissionError`
(producers.ingress.errors: ModelRefused, RateLimited, BudgetExceeded, Unavailable,
TooLarge, IdempotencyConflict), and releases the hold first; each route answers it in
its own wire format (Ayush's JSON body, or OpenAI's through
`openai_errors.from_api_error`).

Where the job row is written: here, by the ingress, before the event is published,
on every route. A client that gets a job id back (in the 202 body, or in
`X-Ayush-Job-Id`) can GET /v1/jobs/{id} at once, whether a worker has taken the job
yet or not (a durable commit; concurrent requests' rows go as one statement,
infra.db.jobs.QueuedJobs). An event that cannot be published deletes the row it came
with: nothing will run that job. The worker only creates a row for an event whose row
it does not find (one another producer published).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from infra.channels import job_status_feed
from infra.db import jobs as job_store
from infra.db.models import Job
from infra.errors import EventTooLarge, TransientError
from producers.ingress.admission import admit_billable, estimate_input_tokens, release_billable
from producers.ingress.caller import Caller
from producers.ingress.errors import IdempotencyConflict, SubmissionError, TooLarge, unavailable
from producers.ingress.routing import route_job
from producers.ingress.state import Services
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import uuid7
from schemas.jobs import ChatJob, JobRequested
from schemas.versions import job_requested


@dataclass(frozen=True)
class Submitted:
    """The job a submission stands for: a new one, or the one an Idempotency-Key named."""

    id: uuid.UUID
    status: str


async def submit(
    request: Request,
    svc: Services,
    caller: Caller,
    job: ChatJob,
    *,
    job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    reply_to: str | None = None,
    live_text: bool = True,
    count_request: bool = False,
) -> Submitted:
    """Admit, record and publish `job` for `caller`; raises SubmissionError.

    `job_id`: the id to give it (a caller that waits for the answer registers it
    first), else a new one. `reply_to`, `live_text`: as in JobRequested.
    `count_request`: also count the request in the key's requests per minute, for a
    route that is not behind `rate_limited`.
    """
    job_id = job_id or uuid7()
    job = await route_job(request, job)  # `model: "auto"` …: the model its route chooses
    await admit_billable(
        request,
        caller,
        model=job.model,
        requests=1 if count_request else 0,
        input_tokens=estimate_input_tokens(job),
        hold_id=job_id,
        user_id=job.user_id,
        max_output_tokens=0 if job.kind == "embedding" else job.max_tokens,
    )
    payload = JobRequested(
        job_id=job_id, api_key_id=caller.key_id, job=job, reply_to=reply_to, live_text=live_text
    )
    try:
        submitted = await _record_and_publish(svc, caller, job, idempotency_key, payload)
    except BaseException:
        await release_billable(request, caller, job_id)
        raise
    if submitted.id != job_id:
        # An Idempotency-Key used before: the first request holds the reservation,
        # and this job id never runs.
        await release_billable(request, caller, job_id)
    return submitted


async def _record_and_publish(
    svc: Services,
    caller: Caller,
    job: ChatJob,
    idempotency_key: str | None,
    payload: JobRequested,
) -> Submitted:
    job_id = payload.job_id
    event = job_requested(payload, caller.tenant_id, caller.actor)
    row = Job(
        id=job_id,
        status="queued",
        tenant_id=caller.tenant_id,
        api_key_id=caller.key_id,
        user_id=job.user_id,
        kind=job.kind,
        model=job.model,
        request=job.model_dump(mode="json"),
        job_metadata=dict(job.metadata),
        idempotency_key=idempotency_key,
        request_event_id=event.id,
    )
    if idempotency_key is None:
        await svc.queued.insert(row)
        stored, created = row, True
    else:
        stored, created = await job_store.insert_job(svc.db, row)
    if not created:
        if stored.request != row.request:
            raise IdempotencyConflict()
        if stored.published_at is None:
            # The first try stored the job but may have died before publishing:
            # publish again under the same event id, which consumers dedupe.
            again = job_requested(
                payload.model_copy(update={"job_id": stored.id}),
                caller.tenant_id,
                caller.actor,
                event_id=stored.request_event_id,
            )
            await _publish(svc, again)
        return Submitted(stored.id, stored.status)
    try:
        await _publish(svc, event)
    except SubmissionError:  # refused or not taken: the event is not in the log
        await job_store.delete_unpublished(svc.db, job_id)
        raise
    if idempotency_key is not None:
        await job_store.mark_published(svc.db, job_id)
    if payload.reply_to is None:
        # A caller waiting on a reply channel hears from the worker; a stream read
        # later (GET /v1/jobs/{id}/events) starts with the job queued, and so does the
        # user's feed, by the same script call. (A waited job's feed starts at running.)
        feed = job_status_feed(caller.tenant_id, job.user_id, job_id, "queued", job.kind, job.model)
        await svc.streams.append(job_id, "status", {"status": "queued"}, also=feed)
    return Submitted(job_id, "queued")


async def _publish(svc: Services, event: Envelope[Any]) -> None:
    try:
        await svc.publisher.publish(topics.AI_JOB_REQUESTED.name, event)
    except EventTooLarge as exc:
        raise TooLarge(exc) from exc
    except TransientError as exc:
        raise unavailable("the event log", exc) from exc
