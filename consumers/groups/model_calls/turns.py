"""Response jobs (`kind="response"`, POST /v1/responses): a turn of a conversation.

Before the call: the history (its conversation's items, or its `previous_response_id`
chain's) and the new input become the job's messages, instructions first, fitted to the
model's context window. During it: a background response's cancel flag is watched.
After it: the response row is finished with its output items (ids derived from the
response id, as the ingress announced them), and `response.finished` goes to
conversation.events (keyed by the conversation, else the response). The usual job events
and stream entries are the group's own (group.py, outcomes.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from consumers.groups.model_calls.answers import Answer
from consumers.groups.model_calls.ports import SYSTEM, Ports
from consumers.groups.model_calls.titles import title_after_turn
from consumers.jobs import context
from consumers.jobs.requests import chat_request
from infra.channels import Mirror, channels_of
from infra.db import conversation_items
from infra.db import responses as store
from infra.errors import PermanentError, TransientError
from infra.providers import tokens
from schemas import jobs as job_events
from schemas.conversations import (
    RESPONSE_FINISHED,
    ContextSent,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    MessageItem,
    ResponseFinished,
    ResponseTurn,
    ResponseUsage,
    StoredItem,
    item_id,
    response_wire_id,
)
from schemas.envelope import Envelope
from schemas.jobs import ChatJob, ChatMessage, ImagePart, TextPart, ToolCall
from schemas.responses_api import error_code, output_items
from schemas.topics import CONVERSATION_EVENTS
from schemas.versions import follow_up

log = logging.getLogger(__name__)

T = TypeVar("T")
# How often a running background response looks at its cancel flag.
CANCEL_POLL_S = 0.2


class ResponseCancelled(PermanentError):
    code = "cancelled"

    def __init__(self) -> None:
        super().__init__("the response was cancelled")


def turn_of(job: ChatJob) -> ResponseTurn:
    assert job.response is not None, "a response job carries its turn"
    return job.response


# before the call -------------------------------------------------------------------------
async def assembled(
    tenant_id: uuid.UUID, job: ChatJob, ports: Ports
) -> tuple[ChatJob, ContextSent]:
    """The job with its messages: instructions, the history, the new input (once)."""
    turn = turn_of(job)
    history = await _history(tenant_id, turn, ports)
    new = {i.id for i in turn.input}
    items = [i for i in history if i.id not in new] + list(turn.input)
    messages = as_messages(items)
    if turn.instructions:
        messages.insert(0, ChatMessage(role="system", content=turn.instructions))
    fitted, context = fit_context(messages, job, turn, ports)
    return job.model_copy(update={"messages": fitted}), context


async def _history(tenant_id: uuid.UUID, turn: ResponseTurn, ports: Ports) -> list[StoredItem]:
    if turn.conversation_id is not None:
        return await conversation_items.of_conversation(ports.db, tenant_id, turn.conversation_id)
    if turn.previous_response_id is not None:
        chain = await store.chain(ports.db, tenant_id, turn.previous_response_id)
        return await conversation_items.of_responses(ports.db, tenant_id, chain)
    return []


def fit_context(
    messages: list[ChatMessage], job: ChatJob, turn: ResponseTurn, ports: Ports
) -> tuple[list[ChatMessage], ContextSent]:
    """The history fitted to the model's context window (consumers/jobs/context.fit):
    with `truncation: "auto"` the oldest whole turns are dropped; else a history that does
    not fit raises ContextTooLong (400 context_length_exceeded)."""
    sent = chat_request(job.model_copy(update={"messages": messages})).messages
    fitted = context.fit(
        sent,
        ports.gateway.catalog.context_window(job.model),
        job.max_tokens,
        truncation=turn.truncation,
        model=job.model,
        overhead=_overhead(job),
    )
    kept = {id(m) for m in fitted.messages}
    chosen = [m for m, provider in zip(messages, sent, strict=True) if id(provider) in kept]
    return chosen, ContextSent(
        items=len(chosen), dropped=fitted.dropped, input_tokens=fitted.input_tokens
    )


def _overhead(job: ChatJob) -> int:
    """What the request sends beside its messages: tool definitions, an answer schema."""
    sent = [t.model_dump_json() for t in job.tools or ()]
    if job.response_format is not None:
        sent.append(job.response_format.model_dump_json())
    return tokens.estimate_texts(sent) if sent else 0


def as_messages(items: list[StoredItem]) -> list[ChatMessage]:
    """Items as chat messages: developer is system; consecutive function calls are one
    assistant message (joined to the assistant's words just before them); each
    function call's output is a tool message."""
    out: list[ChatMessage] = []
    for stored in items:
        item = stored.item
        if isinstance(item, MessageItem):
            out.append(_message(item))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                calls = [*(last.tool_calls or ()), call]
                out[-1] = last.model_copy(update={"tool_calls": calls})
            else:
                out.append(ChatMessage(role="assistant", tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            out.append(ChatMessage(role="tool", content=item.output, tool_call_id=item.call_id))
    return out


def _message(item: MessageItem) -> ChatMessage:
    role = "system" if item.role in ("system", "developer") else item.role
    parts = item.parts()
    images = any(isinstance(p, InputImage) for p in parts)
    return ChatMessage(
        role=role,
        content=item.text(),
        parts=[
            ImagePart(url=p.image_url, detail=p.detail)
            if isinstance(p, InputImage)
            else TextPart(text=p.text)
            for p in parts
        ]
        if images
        else None,
    )


# during it -------------------------------------------------------------------------------
async def unless_cancelled(ports: Ports, request: job_events.JobRequested, call: Awaitable[T]) -> T:
    """The call's result, unless the (background) response is cancelled first or meanwhile:
    then the call is stopped and ResponseCancelled raised."""
    job = request.job
    if job.kind != "response" or not turn_of(job).background:
        return await call
    job_id = request.job_id
    if await ports.streams.cancelled(job_id):
        if asyncio.iscoroutine(call):
            call.close()
        raise ResponseCancelled()
    task = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CANCEL_POLL_S)
            if done:
                return task.result()
            if await ports.streams.cancelled(job_id):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise ResponseCancelled()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def delta_announcer(
    tenant_id: uuid.UUID, request: job_events.JobRequested, ports: Ports
) -> Callable[[str], Awaitable[None]] | None:
    """What sends each text delta to the turn's live channels; None when there are none."""
    job = request.job
    if job.kind != "response" or ports.channels is None:
        return None
    channels = channels_of(tenant_id, turn_of(job).conversation_id, job.user_id)
    if not channels:
        return None
    data = {
        "response_id": response_wire_id(request.job_id),
        "item_id": item_id("msg", request.job_id, 0),
    }

    async def announce(text: str) -> None:
        await _live(
            ports, [(c, "response.output_text.delta", {**data, "delta": text}) for c in channels]
        )

    return announce


async def started(tenant_id: uuid.UUID, request: job_events.JobRequested, ports: Ports) -> None:
    if request.job.kind == "response":
        await store.set_status(ports.db, tenant_id, request.job_id, "in_progress")


# after it --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ended:
    """A response's end, stored: what to publish once its caller has the answer."""

    event: ResponseFinished
    told: dict[str, Any]  # what the live channels' `response.completed` says besides


async def finished(
    raw: Envelope[Any], request: job_events.JobRequested, answer: Answer, ports: Ports
) -> Ended:
    """Finish the response with its output (its row and items). Its `response.finished`
    goes out with the job's outcome events (`ended_events`), after the answer: a
    redelivered job re-publishes it from the row (`ended_again`)."""
    result = answer.result
    incomplete = result.finish_reason in ("length", "content_filter")
    status = "incomplete" if incomplete else "completed"
    output = output_items(
        request.job_id,
        result.text,
        result.tool_calls,
        int(time.time()),
        "incomplete" if incomplete else "completed",
    )
    usage = ResponseUsage(
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_input_tokens,
    )
    context = answer.context
    event = ResponseFinished(
        response_id=request.job_id,
        conversation_id=turn_of(request.job).conversation_id,
        status=status,
        model=result.model,
        output=output,
        usage=usage,
        context=context,
        user_id=request.job.user_id,
    )
    await store.finish(
        ports.db,
        raw.tenant_id,
        request.job_id,
        status=status,
        output=output,
        usage=usage.model_dump(),
        context=context.model_dump() if context else None,
        durable=False,  # the job's completion, durable, follows before anyone is told
    )
    return Ended(event, {"usage": usage.model_dump()})


def ended_events(raw: Envelope[Any], ended: Ended | None) -> list[tuple[str, Envelope[Any]]]:
    """The `response.finished` of an end, to publish with the job's outcome."""
    return [] if ended is None else [(CONVERSATION_EVENTS.name, _finished_event(raw, ended.event))]


async def tell(
    raw: Envelope[Any], request: job_events.JobRequested, ended: Ended, ports: Ports
) -> None:
    """The end on the turn's live channels."""
    await _announce(raw, request, ended.event, ports, ended.told)


async def ended_again(raw: Envelope[Any], request: job_events.JobRequested, ports: Ports) -> None:
    """A redelivered turn that had ended: its `response.finished` again, from its row and
    output items (same id: consumers drop the duplicate)."""
    row = await store.get(ports.db, raw.tenant_id, request.job_id)
    if row is None or row.status not in store.TERMINAL:
        return
    error = row.error or {}
    event = ResponseFinished(
        response_id=row.id,
        conversation_id=row.conversation_id,
        status=row.status,
        model=row.model,
        output=await store.items(ports.db, raw.tenant_id, row.id, 1),
        usage=ResponseUsage.model_validate(row.usage) if row.usage else None,
        error_code=error.get("code"),
        error_message=error.get("message"),
        context=ContextSent.model_validate(row.context) if row.context else None,
        user_id=request.job.user_id,
    )
    await ports.publisher.publish(CONVERSATION_EVENTS.name, _finished_event(raw, event))


async def titled(
    raw: Envelope[Any], request: job_events.JobRequested, answer: Answer, ports: Ports
) -> None:
    """After a conversation's turn is answered (and announced): its title, if it has none."""
    turn = turn_of(request.job)
    if turn.conversation_id is None or not answer.result.text:
        return
    user_text = next(
        (
            s.item.text()
            for s in reversed(turn.input)
            if isinstance(s.item, MessageItem) and s.item.role == "user"
        ),
        "",
    )
    await title_after_turn(raw, request, turn.conversation_id, user_text, answer.result.text, ports)


async def failed(
    raw: Envelope[Any],
    request: job_events.JobRequested,
    message: str,
    ports: Ports,
    *,
    status: int | None = None,
    code: str | None = None,
) -> None:
    """Finish the response as failed (or cancelled), and tell conversation.events."""
    code = error_code(status, code)
    ended = "cancelled" if code == "cancelled" else "failed"
    error = {"code": code, "message": message}
    event = ResponseFinished(
        response_id=request.job_id,
        conversation_id=turn_of(request.job).conversation_id,
        status=ended,
        model=request.job.model,
        error_code=code,
        error_message=message,
        user_id=request.job.user_id,
    )
    stored = store.finish(ports.db, raw.tenant_id, request.job_id, status=ended, error=error)
    await _record(raw, event, ports, stored)
    await _announce(raw, request, event, ports, {"error": error})


async def _record(
    raw: Envelope[Any], event: ResponseFinished, ports: Ports, stored: Awaitable[Any]
) -> None:
    """A failed response's end in its row (`stored`) and on conversation.events, side by
    side: both are idempotent, and both are done before the job fails, so a crash between
    them redoes the turn's end rather than losing half of it."""
    envelope = _finished_event(raw, event)
    await asyncio.gather(stored, ports.publisher.publish(CONVERSATION_EVENTS.name, envelope))


def _finished_event(raw: Envelope[Any], event: ResponseFinished) -> Envelope[Any]:
    return follow_up(
        raw,
        RESPONSE_FINISHED,
        event,
        "response.finished",
        SYSTEM,
        correlation_id=event.conversation_id or event.response_id,
    )


async def _announce(
    raw: Envelope[Any],
    request: job_events.JobRequested,
    event: ResponseFinished,
    ports: Ports,
    extra: dict[str, Any],
) -> None:
    """The turn's end on its conversation's channel and its user's feed."""
    channels = channels_of(raw.tenant_id, event.conversation_id, request.job.user_id)
    if ports.channels is None or not channels:
        return
    kind = (
        "response.completed" if event.status in ("completed", "incomplete") else "response.failed"
    )
    data = {"response_id": response_wire_id(event.response_id), "status": event.status, **extra}
    entries: list[Mirror] = []
    if event.conversation_id is not None:
        entries += [
            (
                c,
                "conversation.item.added",
                {"conversation_id": str(event.conversation_id), "item": i.wire()},
            )
            for i in event.output
            for c in channels
        ]
    entries += [(c, kind, data) for c in channels]
    await _live(ports, entries)


async def _live(ports: Ports, entries: list[Mirror]) -> None:
    if ports.channels is None:
        return
    try:
        await ports.channels.publish(entries)
    except TransientError as exc:
        log.warning("live channels: %d events not published: %s", len(entries), exc)
