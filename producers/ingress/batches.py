"""The OpenAI Batches API, and each batch's live progress as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from starlette.responses import StreamingResponse

from infra.db import batches as batch_store
from infra.db.models import Batch, utcnow
from infra.errors import TransientError
from infra.live_streams import TERMINAL, StreamEvent
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.event_streams import SSE, SSE_HEADERS, slot_stream, take_slot
from producers.ingress.files import owned_file
from producers.ingress.job_stream import ended_stream, follow, resume_point, sse
from producers.ingress.openai_errors import OpenAIError, from_api_error, not_found
from producers.ingress.scope import visible
from producers.ingress.state import Services, Svc
from schemas import batches as batch_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import derived_id, uuid7

# The id of the `done` frame of a finished batch replayed from the database.
BATCH_REPLAY_END = "0-2"

router = APIRouter(prefix="/v1/batches", tags=["batches"])


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def batch_object(batch: Batch) -> batch_events.BatchObject:
    errors = {"object": "list", "data": batch.errors} if batch.errors else None
    return batch_events.BatchObject(
        id=batch_events.batch_public_id(batch.id),
        endpoint=batch.endpoint,
        errors=errors,
        input_file_id=batch_events.file_public_id(batch.input_file_id),
        completion_window=batch.completion_window,
        status=batch.status,
        output_file_id=batch_events.file_public_id(batch.output_file_id)
        if batch.output_file_id
        else None,
        error_file_id=batch_events.file_public_id(batch.error_file_id)
        if batch.error_file_id
        else None,
        created_at=int(batch.created_at.timestamp()),
        in_progress_at=_ts(batch.in_progress_at),
        expires_at=_ts(batch.expires_at),
        finalizing_at=_ts(batch.finalizing_at),
        completed_at=_ts(batch.completed_at),
        failed_at=_ts(batch.failed_at),
        cancelling_at=_ts(batch.cancelling_at),
        cancelled_at=_ts(batch.cancelled_at),
        expired_at=_ts(batch.expired_at),
        request_counts=batch_events.RequestCounts(
            total=batch.total, completed=batch.completed, failed=batch.failed
        ),
        metadata=batch.batch_metadata,
    )


async def _owned(svc: Services, caller: Caller, batch_id: str) -> Batch:
    ident = batch_events.parse_public_id("batch_", batch_id)
    batch = await batch_store.get_batch(svc.db, ident, caller.tenant_id) if ident else None
    if batch is None or not visible(caller, batch.user_id):
        raise not_found("batch", batch_id)
    return batch


def _event(caller: Caller, batch: Batch, type_: str, payload: Any, event_id: Any) -> Envelope[Any]:
    return caller.event(type_, batch.id, payload, id=event_id)


@router.post(
    "",
    response_model=batch_events.BatchObject,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
)
async def create(
    body: Annotated[batch_events.CreateBatch, Depends(json_body(batch_events.CreateBatch))],
    caller: Authenticated,
    svc: Svc,
) -> batch_events.BatchObject:
    if body.endpoint not in batch_events.ENDPOINTS:
        raise OpenAIError(
            400,
            f"endpoint must be one of {batch_events.ENDPOINTS}",
            "invalid_request_error",
            "invalid_value",
            "endpoint",
        )
    stored = await owned_file(svc, caller, body.input_file_id)
    if stored.purpose != "batch":
        raise OpenAIError(
            400,
            "the input file's purpose must be 'batch'",
            "invalid_request_error",
            "invalid_value",
            "input_file_id",
        )
    now = utcnow()
    window = timedelta(seconds=svc.settings.batch_completion_window_s)
    batch = Batch(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        api_key_id=caller.key_id,
        user_id=caller.own_user,
        input_file_id=stored.id,
        endpoint=body.endpoint,
        completion_window=body.completion_window,
        status="validating",
        batch_metadata=body.metadata,
        created_at=now,
        expires_at=now + window,
    )
    await batch_store.insert_batch(svc.db, batch)
    created = batch_events.BatchCreated(batch_id=batch.id, api_key_id=caller.key_id)
    event = _event(
        caller, batch, batch_events.BATCH_CREATED, created, derived_id(batch.id, "created")
    )
    await svc.streams.append(batch.id, "status", {"status": "validating"})
    try:
        await svc.publisher.publish(topics.BATCH_REQUESTED.name, event)
    except TransientError as exc:
        await batch_store.set_status(
            svc.db,
            batch.id,
            "failed",
            only_from=("validating",),
            errors=[{"code": "unavailable", "message": "the batch could not be queued"}],
        )
        raise from_api_error(unavailable("the event log", exc)) from exc
    return batch_object(batch)


@router.get("/{batch_id}", response_model=batch_events.BatchObject)
async def retrieve(batch_id: str, caller: Authenticated, svc: Svc) -> batch_events.BatchObject:
    return batch_object(await _owned(svc, caller, batch_id))


@router.post("/{batch_id}/cancel", response_model=batch_events.BatchObject)
async def cancel(batch_id: str, caller: Authenticated, svc: Svc) -> batch_events.BatchObject:
    batch = await _owned(svc, caller, batch_id)
    moved = await batch_store.set_status(
        svc.db, batch.id, "cancelling", only_from=("validating", "in_progress")
    )
    if moved is None:
        if batch.status == "cancelled":
            return batch_object(batch)
        if batch.status != "cancelling":
            raise OpenAIError(
                409,
                f"cannot cancel a batch that is {batch.status}",
                "invalid_request_error",
                "invalid_state",
            )
        moved = batch  # asked again: publish again (same event id), in case the first was lost
    payload = batch_events.BatchCancelRequested(batch_id=batch.id)
    event = _event(
        caller, batch, batch_events.BATCH_CANCEL_REQUESTED, payload, derived_id(batch.id, "cancel")
    )
    await svc.streams.append(batch.id, "status", {"status": "cancelling"})
    try:
        await svc.publisher.publish(topics.BATCH_REQUESTED.name, event)
    except TransientError as exc:
        raise from_api_error(unavailable("the event log", exc)) from exc
    return batch_object(moved)


@router.get("")
async def list_batches(
    caller: Authenticated,
    svc: Svc,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    cursor = batch_events.parse_public_id("batch_", after) if after else None
    if after and cursor is None:
        raise OpenAIError(
            400, f"invalid cursor {after!r}", "invalid_request_error", "invalid_value", "after"
        )
    rows = await batch_store.list_batches(
        svc.db, caller.tenant_id, cursor, limit + 1, user_id=caller.own_user
    )
    data = [batch_object(b).model_dump() for b in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


@router.get("/{batch_id}/events")
async def events(
    batch_id: str,
    caller: Authenticated,
    svc: Svc,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    batch = await _owned(svc, caller, batch_id)
    finished = batch.status in batch_events.TERMINAL_STATUSES
    try:
        resume = await resume_point(
            svc.streams.stream(batch.id),
            last_event_id,
            finished=finished,
            replay_end=BATCH_REPLAY_END,
        )
        if resume.ended:  # nothing left to send: no slot needed
            return StreamingResponse(ended_stream(), media_type=SSE, headers=SSE_HEADERS)
        slot = await take_slot(svc, caller)
    except ApiError as exc:  # this group answers in OpenAI's error shape
        raise from_api_error(exc) from exc
    return slot_stream(svc, slot, _stream(svc, batch, resume.after))


def _stream(svc: Services, batch: Batch, after: str) -> AsyncIterator[bytes]:
    return sse(follow(svc.streams.stream(batch.id), after, lambda _: _stored_status(svc, batch)))


async def _stored_status(svc: Services, batch: Batch) -> AsyncIterator[StreamEvent]:
    """Expired live stream: the stored batch still says where it stands."""
    current = await batch_store.get_batch(svc.db, batch.id, batch.tenant_id) or batch
    view = batch_object(current)
    counts = view.request_counts.model_dump()
    yield StreamEvent("0-1", "status", {"status": view.status, "request_counts": counts})
    if current.status in batch_events.TERMINAL_STATUSES:
        yield StreamEvent(BATCH_REPLAY_END, TERMINAL, {"status": current.status})
