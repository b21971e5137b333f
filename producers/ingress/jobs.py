"""POST /v1/jobs, GET /v1/jobs (the list), GET /v1/jobs/{id} and its live event stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import StreamingResponse

from infra.db import jobs as job_store
from infra.errors import UnknownModel
from producers.ingress.admission import rate_limited
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError, ModelRefused
from producers.ingress.event_streams import SSE, SSE_HEADERS, slot_stream, take_slot
from producers.ingress.job_stream import ended_stream, job_event_stream, resume_point
from producers.ingress.scope import scoped_job, scoped_user, visible
from producers.ingress.state import Services, services_dependency
from producers.ingress.submission import submit
from schemas.api import JobAccepted, JobList, JobView
from schemas.jobs import ChatJob, JobKind, JobStatus, TokenUsage

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
    body: Annotated[ChatJob, Depends(json_body(ChatJob))],
    caller: Owner,
    svc: Svc,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobAccepted:
    if body.kind == "response":
        # Its history is read for the turn's conversation or previous response, which
        # POST /v1/responses checks are the caller's and records; never taken as given.
        raise _invalid("kind", "a response is made by POST /v1/responses, not as a job")
    body = scoped_job(caller, body)
    try:
        job = await submit(request, svc, caller, body, idempotency_key=idempotency_key)
    except ModelRefused as exc:
        if isinstance(exc.cause, UnknownModel):
            raise _invalid("model", str(exc.cause)) from exc
        raise  # the same body at every door (openai_errors.install)
    # Any other SubmissionError is answered by the ApiError handler: Ayush's JSON body.
    base = str(request.base_url).rstrip("/")
    return JobAccepted(
        id=job.id,
        status=job.status,
        url=f"{base}/v1/jobs/{job.id}",
        events_url=f"{base}/v1/jobs/{job.id}/events",
    )


@router.get("", response_model=JobList)
async def list_jobs(
    caller: Owner,
    svc: Svc,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    status: JobStatus | None = None,
    kind: JobKind | None = None,
    since: datetime | None = None,
    after: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    """The caller's jobs, newest first: for a reconnecting client to find what it started.

    `after` is the last id of the previous page. A signed-in user sees their own
    jobs (a `user_id` naming another is 403); a key sees its tenant's, or with
    `user_id` that user's.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is UTC
    rows = await job_store.list_jobs(
        svc.db,
        caller.tenant_id,
        limit=limit + 1,
        after=after,
        user_id=scoped_user(caller, user_id),
        status=status,
        kind=kind,
        since=since,
    )
    data = [job_view(found) for found in rows[:limit]]
    return JobList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )


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
    resume = await resume_point(svc.streams.stream(job_id), last_event_id, finished=finished)
    if resume.ended:  # nothing left to send: no slot needed
        return StreamingResponse(ended_stream(), media_type=SSE, headers=SSE_HEADERS)
    slot = await take_slot(svc, caller)
    return slot_stream(svc, slot, job_event_stream(svc, caller.tenant_id, job_id, resume.after))


def job_view(found: job_store.JobWithResult) -> JobView:
    job, result = found.job, found.result
    usage = (
        TokenUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
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
        route=job.request.get("route"),
    )


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", f"invalid field {field}: {message}", field=field)
