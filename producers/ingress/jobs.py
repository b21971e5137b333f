"""POST /v1/jobs, GET /v1/jobs/{id} and its live event stream."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import StreamingResponse

from infra.db import jobs as job_store
from infra.db.models import Job
from infra.errors import ModelNotPriced, TransientError, UnknownModel
from producers.ingress.admission import (
    admit_billable,
    estimate_input_tokens,
    rate_limited,
    release_billable,
)
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.event_streams import SSE, SSE_HEADERS, slot_stream, take_slot
from producers.ingress.job_stream import ended_stream, job_event_stream, resume_point
from producers.ingress.openai_errors import model_refused
from producers.ingress.scope import scoped_job, visible
from producers.ingress.state import Services, services_dependency
from schemas import jobs as ev
from schemas import topics
from schemas.api import JobAccepted, JobView
from schemas.envelope import Envelope
from schemas.ids import uuid7

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

Owner = Annotated[Caller, Depends(rate_limited)]
Svc = Annotated[Services, Depends(services_dependency)]


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
)
async def create_job(
    body: Annotated[ev.ChatJob, Depends(json_body(ev.ChatJob))],
    caller: Owner,
    svc: Svc,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobAccepted:
    body = scoped_job(caller, body)
    try:
        svc.catalog.check(body.model)
    except UnknownModel as exc:
        raise _invalid("model", str(exc)) from exc
    except ModelNotPriced as exc:
        raise model_refused(exc) from exc
    job_id = uuid7()
    await admit_billable(
        request,
        caller,
        model=body.model,
        input_tokens=estimate_input_tokens(body),
        max_output_tokens=body.max_tokens,
        hold_id=job_id,
        user_id=body.user_id,
    )
    try:
        return await _accept(body, caller, svc, request, job_id, idempotency_key)
    except BaseException:
        await release_billable(request, caller, job_id)
        raise


async def _accept(
    body: ev.ChatJob,
    caller: Caller,
    svc: Services,
    request: Request,
    job_id: uuid.UUID,
    idempotency_key: str | None,
) -> JobAccepted:
    envelope = _requested_event(caller, job_id, body, event_id=uuid7())
    row = Job(
        id=job_id,
        tenant_id=caller.tenant_id,
        api_key_id=caller.key_id,
        user_id=body.user_id,
        kind=body.kind,
        model=body.model,
        status="queued",
        request=body.model_dump(mode="json"),
        job_metadata=dict(body.metadata),
        idempotency_key=idempotency_key,
        request_event_id=envelope.id,
    )
    stored, created = await job_store.insert_job(svc.db, row)
    if not created:
        if stored.request != row.request:
            raise ApiError(
                409, "idempotency_conflict",
                "this Idempotency-Key was used with a different request body",
            )  # fmt: skip
        if stored.published_at is None:
            # The first try stored the job but may have died before publishing:
            # publish again under the same event id, which consumers dedupe.
            again = _requested_event(caller, stored.id, body, event_id=stored.request_event_id)
            await _publish(svc, again, stored.id, delete_on_failure=False)
        # The first request holds the reservation; this new job id never runs.
        await release_billable(request, caller, job_id)
        return _accepted(request, stored.id, stored.status)
    await _publish(svc, envelope, job_id, delete_on_failure=True)
    if idempotency_key is not None:
        await job_store.mark_published(svc.db, job_id)
    await svc.streams.append(job_id, "status", {"status": "queued"})
    return _accepted(request, job_id, "queued")


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: uuid.UUID, caller: Owner, svc: Svc) -> JobView:
    found = await job_store.get_job(svc.db, caller.tenant_id, job_id)
    if found is None or not visible(caller, found.job.user_id):
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job_view(found)


@router.get("/{job_id}/events")
async def job_events(
    job_id: uuid.UUID,
    caller: Owner,
    svc: Svc,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    found = await job_store.get_job(svc.db, caller.tenant_id, job_id)
    if found is None or not visible(caller, found.job.user_id):
        raise ApiError(404, "not_found", f"no job {job_id}")
    finished = found.job.status in ("succeeded", "failed")
    resume = await resume_point(svc, job_id, last_event_id, finished=finished)
    if resume.ended:  # nothing left to send: no slot needed
        return StreamingResponse(ended_stream(), media_type=SSE, headers=SSE_HEADERS)
    slot = await take_slot(svc, caller)
    return slot_stream(svc, slot, job_event_stream(svc, caller.tenant_id, job_id, resume.after))


def job_view(found: job_store.JobWithResult) -> JobView:
    job, result = found.job, found.result
    usage = (
        ev.TokenUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
        if result is not None
        else None
    )
    return JobView(
        id=job.id,
        kind=job.kind,
        status=job.status,
        model=job.model,
        provider=job.provider,
        user_id=job.user_id,
        result=result.text if result else None,
        error=job.error,
        finish_reason=result.finish_reason if result else None,
        usage=usage,
        cost_usd=result.cost_usd if result else None,
        metadata=job.job_metadata,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _requested_event(
    caller: Caller, job_id: uuid.UUID, body: ev.ChatJob, event_id: uuid.UUID
) -> Envelope[Any]:
    return Envelope[Any](
        id=event_id,
        type=ev.JOB_REQUESTED,
        tenant_id=caller.tenant_id,
        actor=caller.actor,
        correlation_id=job_id,
        payload=ev.JobRequested(job_id=job_id, api_key_id=caller.key_id, job=body),
    )


async def _publish(
    svc: Services, envelope: Envelope[Any], job_id: uuid.UUID, *, delete_on_failure: bool
) -> None:
    try:
        await svc.publisher.publish(topics.AI_JOB_REQUESTED.name, envelope)
    except TransientError as exc:
        if delete_on_failure:
            await job_store.delete_unpublished(svc.db, job_id)
        raise unavailable("the event log", exc) from exc


def _accepted(request: Request, job_id: uuid.UUID, status: str) -> JobAccepted:
    base = str(request.base_url).rstrip("/")
    return JobAccepted(
        id=job_id,
        status=status,
        url=f"{base}/v1/jobs/{job_id}",
        events_url=f"{base}/v1/jobs/{job_id}/events",
    )


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", f"invalid field {field}: {message}", field=field)
