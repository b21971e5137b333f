"""The Responses API: POST /v1/responses and the routes of one response.

A response is a job (`kind="response"`, its id the job's): submitted through
`submission.submit` (admission, budget, job row, `ai.job.requested`) after its row and
input items are written, so a GET right after sees it; a publish that fails removes
them. Its history is the `previous_response_id` chain or its conversation, assembled by
the model-calls worker. Three ways to answer: wait for the whole Response (as
/v1/chat/completions does), `stream` the Responses events (response_events.py), or
`background`: the queued Response at once, to poll, resume
(`GET …?stream=true&starting_after=N`) or cancel.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from infra.channels import channels_of
from infra.db import responses as store
from infra.db.conversation_models import ResponseRecord
from infra.errors import TransientError
from infra.live_streams import StreamEvent
from infra.stream_slots import StreamSlot
from producers.ingress import openai_errors as oe
from producers.ingress.auth import authenticate
from producers.ingress.caller import Caller
from producers.ingress.event_streams import slot_stream, take_slot
from producers.ingress.plain_route import PlainRoute, json_body
from producers.ingress.response_events import (
    Base,
    ResponseEvents,
    base_of,
    render,
    usage_wire,
)
from producers.ingress.response_stream import forgetting, live_events, replay_events
from producers.ingress.scope import scoped_job, visible
from producers.ingress.state import Services, services
from producers.ingress.submission import submit
from schemas.conversations import (
    RESPONSE_DELETED,
    ResponseDeleted,
    StoredItem,
    parse_wire_id,
    response_wire_id,
)
from schemas.envelope import Envelope
from schemas.ids import uuid7
from schemas.jobs import ChatJob
from schemas.money import usd_text
from schemas.responses_api import ResponseRequest, response_job
from schemas.topics import CONVERSATION_EVENTS

log = logging.getLogger(__name__)

plain_router = APIRouter(prefix="/v1", tags=["responses"])
router = APIRouter(prefix="/v1", tags=["responses"])
JSON = "application/json"
# How long POST …/cancel waits for the worker to record the cancellation.
CANCEL_WAIT_S = 5.0
Endpoint = Callable[[Request], Awaitable[Response]]


@oe.openai_shaped
async def create_response(request: Request) -> Response:
    svc = services(request)
    caller = await authenticate(request, svc)
    body = await oe.openai_body(request, ResponseRequest)
    previous = await _previous(svc, caller, body.previous_response_id)
    conversation_id = await _conversation(svc, caller, body.conversation_id())
    response_id, created_at = uuid7(), int(time.time())
    try:
        job = response_job(
            body,
            response_id,
            created_at,
            previous_response_id=previous,
            conversation_id=conversation_id,
        )
    except ValidationError as exc:
        raise oe.invalid(exc) from exc
    job = scoped_job(caller, job, "user_id" if body.user_id is not None else "user")
    row = ResponseRecord(
        id=response_id,
        tenant_id=caller.tenant_id,
        user_id=job.user_id,
        conversation_id=conversation_id,
        previous_response_id=previous,
        model=body.model,
        status="queued",
        store=body.store,
        background=body.background,
        params=body.echoed(),
    )
    row.created_at = datetime.fromtimestamp(created_at, UTC)
    base = base_of(row)
    slot = await take_slot(svc, caller) if body.stream else None
    try:
        return await _start(request, svc, caller, job, row, base, slot)
    except BaseException:
        if slot is not None:
            await svc.slots.release(slot)
        raise


plain_router.add_api_route(
    "/responses",
    create_response,
    methods=["POST"],
    route_class_override=PlainRoute,
    openapi_extra=json_body(ResponseRequest),
)


async def _start(
    request: Request,
    svc: Services,
    caller: Caller,
    job: ChatJob,
    row: ResponseRecord,
    base: Base,
    slot: StreamSlot | None,
) -> Response:
    response_id = row.id
    headers = {"X-Ayush-Job-Id": str(response_id)}
    assert job.response is not None
    # A caller that waits (for the whole Response, or streaming it) listens on this
    # process's reply channel: no Redis connection held per request.
    waits = slot is not None or not row.background
    waiter = svc.replies.waiter(response_id) if waits else None
    handed_over = False
    deadline = asyncio.get_running_loop().time() + svc.settings.gateway_wait_timeout_s

    async def next_entry() -> StreamEvent:
        assert waiter is not None
        async with asyncio.timeout_at(deadline):
            return await waiter.next()

    try:
        # Durable once the job's row is (submit): it commits after this, durably.
        await store.create(svc.db, row, job.response.input, durable=False)
        try:
            await submit(
                request,
                svc,
                caller,
                job,
                job_id=response_id,
                reply_to=svc.replies.channel if waits else None,
                live_text=slot is not None or row.background,
                count_request=True,
            )
        except BaseException:
            await store.delete_unpublished(svc.db, caller.tenant_id, response_id)
            raise
        await _announce(svc, caller.tenant_id, row, job.response.input)
        if slot is not None:
            content = forgetting(svc, response_id, live_events(base, next_entry))
            response = slot_stream(svc, slot, content, headers)
            handed_over = True
            return response
        if waiter is None:
            return _json(render(base, "queued"), headers)
        events = ResponseEvents(base)
        while events.final is None:
            try:
                entry = await next_entry()
            except TimeoutError as exc:
                raise oe.OpenAIError(
                    504,
                    f"no answer within {svc.settings.gateway_wait_timeout_s:g}s; the response "
                    f"goes on: GET /v1/responses/{response_wire_id(response_id)}",
                    "timeout_error",
                    "timeout",
                    headers=headers,
                ) from exc
            if entry.type == "error":
                # As /v1/chat/completions answers a failed call: the upstream's status,
                # in OpenAI's shape (the stored response says "failed" too).
                raise _with(oe.from_job_error(entry.data), headers)
            if entry.type == "result":
                headers["X-Ayush-Cost-Usd"] = usd_text(entry.data.get("cost_usd", "0"))
            events.feed(entry)
        return _json(events.final, headers)
    finally:
        if waiter is not None and not handed_over:
            svc.replies.forget(response_id)


async def _announce(
    svc: Services, tenant_id: uuid.UUID, row: ResponseRecord, items: list[StoredItem]
) -> None:
    """The turn on the live channels: its start, and each input item added to its
    conversation. A courtesy: a failure is logged, not answered."""
    channels = channels_of(tenant_id, row.conversation_id, row.user_id)
    if svc.channels is None or not channels:
        return
    created = {
        "response_id": response_wire_id(row.id),
        "conversation_id": str(row.conversation_id) if row.conversation_id else None,
        "model": row.model,
    }
    entries: list[tuple[str, str, dict[str, Any]]] = [
        (c, "response.created", created) for c in channels
    ]
    if row.conversation_id is not None:
        entries += [
            (
                c,
                "conversation.item.added",
                {"conversation_id": str(row.conversation_id), "item": i.wire()},
            )
            for i in items
            for c in channels
        ]
    try:
        await svc.channels.publish(entries)
    except TransientError as exc:
        log.warning("live channels: response %s not announced: %s", row.id, exc)


# one response --------------------------------------------------------------------------
@router.get("/responses/{response_id}")
@oe.openai_shaped
async def get_response(request: Request) -> Response:
    svc, caller, row = await _own(request)
    if request.query_params.get("stream", "").lower() in ("true", "1"):
        after = _int_param(request, "starting_after", -1)
        slot = await take_slot(svc, caller)
        return slot_stream(svc, slot, replay_events(svc, caller.tenant_id, base_of(row), after))
    return _json(await _stored(svc, row))


@router.delete("/responses/{response_id}")
@oe.openai_shaped
async def delete_response(request: Request) -> Response:
    svc, caller, row = await _own(request)
    if not await store.delete_response(svc.db, caller.tenant_id, row.id):
        raise oe.not_found("response", response_wire_id(row.id))
    event = Envelope[Any](
        type=RESPONSE_DELETED,
        tenant_id=caller.tenant_id,
        actor=caller.actor,
        correlation_id=row.conversation_id or row.id,
        payload=ResponseDeleted(response_id=row.id),
    )
    try:
        await svc.publisher.publish(CONVERSATION_EVENTS.name, event)
    except TransientError as exc:
        raise oe.OpenAIError(
            503, f"the event log is unavailable: {exc}", "service_unavailable", "unavailable"
        ) from exc
    body = {"id": response_wire_id(row.id), "object": "response", "deleted": True}
    return _json(body)


@router.post("/responses/{response_id}/cancel")
@oe.openai_shaped
async def cancel_response(request: Request) -> Response:
    svc, _, row = await _own(request)
    if not row.background:
        raise oe.OpenAIError(
            400,
            "only a response created with background=true can be cancelled",
            "invalid_request_error",
            "invalid_value",
            "response_id",
        )
    if row.status not in store.TERMINAL:
        try:
            await svc.streams.cancel(row.id)
        except TransientError as exc:
            raise oe.OpenAIError(
                503, f"cancelling is unavailable: {exc}", "service_unavailable", "unavailable"
            ) from exc
        row = await _ended(svc, row)
    return _json(await _stored(svc, row))


async def _ended(svc: Services, row: ResponseRecord) -> ResponseRecord:
    """The row once the worker ended it, or as it is after CANCEL_WAIT_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_WAIT_S
    while loop.time() < deadline:
        found = await store.get(svc.db, row.tenant_id, row.id)
        if found is None or found.status in store.TERMINAL:
            return found or row
        await asyncio.sleep(0.05)
    return row


@router.get("/responses/{response_id}/input_items")
@oe.openai_shaped
async def input_items(request: Request) -> Response:
    svc, caller, row = await _own(request)
    limit = _int_param(request, "limit", 20)
    if not 1 <= limit <= 100:
        raise _bad("limit", "limit must be between 1 and 100")
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise _bad("order", 'order must be "asc" or "desc"')
    items = await store.items(svc.db, caller.tenant_id, row.id, 0)
    if order == "desc":
        items.reverse()
    after = request.query_params.get("after")
    if after:
        ids = [i.id for i in items]
        if after not in ids:
            raise _bad("after", f"no item {after} in this response's input")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    body = {
        "object": "list",
        "data": [i.wire() for i in page],
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": len(items) > limit,
    }
    return _json(body)


# reading -------------------------------------------------------------------------------
async def _own(request: Request) -> tuple[Services, Caller, ResponseRecord]:
    """The caller and the stored response the path names; 404 for what is not theirs."""
    svc = services(request)
    caller = await authenticate(request, svc)
    wire = request.path_params["response_id"]
    row = await _find(svc, caller, wire)
    if row is None:
        raise oe.not_found("response", wire)
    return svc, caller, row


async def _find(svc: Services, caller: Caller, wire: str) -> ResponseRecord | None:
    response_id = parse_wire_id(wire, "resp")
    if response_id is None:
        return None
    row = await store.get(svc.db, caller.tenant_id, response_id)
    if row is None or not row.store or not visible(caller, row.user_id):
        return None
    return row


async def _stored(svc: Services, row: ResponseRecord) -> dict[str, Any]:
    output = [i.wire() for i in await store.items(svc.db, row.tenant_id, row.id, 1)]
    usage = row.usage or None
    if usage is not None:
        usage = usage_wire(
            usage.get("input_tokens", 0),
            usage.get("output_tokens", 0),
            usage.get("cached_tokens", 0),
        )
    incomplete = "max_output_tokens" if row.status == "incomplete" else None
    completed = int(row.completed_at.timestamp()) if row.completed_at else None
    return render(base_of(row), row.status, output, usage, row.error, incomplete, completed)


# request helpers -----------------------------------------------------------------------
async def _previous(svc: Services, caller: Caller, wire: str | None) -> uuid.UUID | None:
    if wire is None:
        return None
    row = await _find(svc, caller, wire)
    if row is None:
        raise _missing(f"Previous response with id '{wire}' not found.", "previous_response_id")
    return row.id


async def _conversation(svc: Services, caller: Caller, wire: str | None) -> uuid.UUID | None:
    if wire is None:
        return None
    conversation_id = parse_wire_id(wire, "conv")
    found = (
        await store.conversation(svc.db, caller.tenant_id, conversation_id)
        if conversation_id
        else None
    )
    if found is None or not visible(caller, found.user_id):
        raise _missing(f"Conversation with id '{wire}' not found.", "conversation")
    return found.id


def _missing(message: str, param: str) -> oe.OpenAIError:
    return oe.OpenAIError(404, message, "invalid_request_error", "not_found", param)


def _bad(param: str, message: str) -> oe.OpenAIError:
    return oe.OpenAIError(400, message, "invalid_request_error", "invalid_value", param)


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise _bad(name, f"{name} must be an integer") from None


def _with(error: oe.OpenAIError, headers: dict[str, str]) -> oe.OpenAIError:
    error.headers = {**headers, **error.headers}
    return error


def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), headers=headers, media_type=JSON)
