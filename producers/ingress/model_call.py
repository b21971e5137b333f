"""One model call answered while its caller waits: the gateway path every API door shares.

The job is published like any other (`submit`), and the request follows its
answer on this process's reply channel (infra.replies.Replies), so no request
holds a Redis connection of its own. What differs between the doors
(`/v1/chat/completions`, `/v1/embeddings`, Anthropic's `/v1/messages`) is the
shape of the answer: a `Shape` renders the streamed events and the final
body. Errors are raised as OpenAIError (producers.ingress.openai_errors); a
door that speaks another error shape translates them at its edge.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import orjson
from fastapi import Request
from fastapi.responses import Response

from infra.live_streams import StreamEvent
from infra.stream_slots import StreamSlot
from producers.ingress import openai_errors as oe
from producers.ingress.caller import Caller
from producers.ingress.event_streams import slot_stream, take_slot
from producers.ingress.state import Services
from producers.ingress.submission import submit
from schemas import jobs as job_events
from schemas.ids import uuid7
from schemas.money import usd_text

JSON = "application/json"
NextEvent = Callable[[], Awaitable[StreamEvent]]


class Shape(Protocol):
    """How one API door answers: as a stream of bytes (SSE), or one JSON body."""

    def stream(
        self, job_id: uuid.UUID, first: StreamEvent, next_event: NextEvent
    ) -> AsyncIterator[bytes]: ...

    def body(self, job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]: ...


async def run(
    request: Request,
    svc: Services,
    caller: Caller,
    job: job_events.ChatJob,
    shape: Shape,
    *,
    stream: bool = False,
) -> Response:
    """Publish `job` and answer with what it produced, as `shape` says."""
    # A stream holds a slot from before its job exists: a refused one costs nothing.
    slot = await take_slot(svc, caller) if stream else None
    try:
        return await _answer(request, svc, caller, job, shape, slot)
    except BaseException:
        if slot is not None:
            await svc.slots.release(slot)
        raise


async def _answer(
    request: Request,
    svc: Services,
    caller: Caller,
    job: job_events.ChatJob,
    shape: Shape,
    slot: StreamSlot | None,
) -> Response:
    job_id = uuid7()
    headers = {"X-Ayush-Job-Id": str(job_id)}
    waiter = svc.replies.waiter(job_id)  # before the job exists: no entry goes unheard
    handed_over = False
    deadline = asyncio.get_running_loop().time() + svc.settings.gateway_wait_timeout_s

    async def next_event() -> StreamEvent:
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter.next()
        except TimeoutError as exc:
            raise oe.OpenAIError(
                504,
                f"no answer within {svc.settings.gateway_wait_timeout_s:g}s; "
                f"the job goes on: GET /v1/jobs/{job_id}",
                "timeout_error",
                "timeout",
                headers=headers,
            ) from exc

    try:
        await submit(
            request,
            svc,
            caller,
            job,
            job_id=job_id,
            reply_to=svc.replies.channel,
            live_text=slot is not None,
            count_request=True,
        )
        first = await _answer_start(next_event)
        if first.type == "error":
            raise _with(oe.from_job_error(first.data), headers)
        if job.cache or job.semantic_cache:
            headers.update(_cache_headers(first.data))
        if slot is not None:
            chunks = shape.stream(job_id, first, next_event)
            response = slot_stream(svc, slot, _forgetting(svc, job_id, chunks), headers)
            handed_over = True
            return response
        result = first
        while result.type == "delta":
            result = await next_event()
        if result.type == "error":
            raise _with(oe.from_job_error(result.data), headers)
        headers["X-Ayush-Cost-Usd"] = usd_text(result.data.get("cost_usd", "0"))
        payload = shape.body(job_id, result.data)
        return Response(orjson.dumps(payload), headers=headers, media_type=JSON)
    finally:
        if not handed_over:
            svc.replies.forget(job_id)


async def _answer_start(next_event: NextEvent) -> StreamEvent:
    """The first entry that says something about the answer: text, a result or an error."""
    while True:
        event: StreamEvent = await next_event()
        if event.type in ("delta", "result", "error"):
            return event


async def _forgetting(
    svc: Services, job_id: uuid.UUID, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        svc.replies.forget(job_id)


def wants_cache(request: Request, caller: Caller) -> bool:
    """Whether to answer from the response cache: the `X-Ayush-Cache` header, else the
    tenant's `response_cache` setting."""
    header = request.headers.get("x-ayush-cache")
    if header is not None:
        return header.strip().lower() in ("true", "1", "yes")
    return bool(caller.settings.get("response_cache", False))


def semantic(request: Request, caller: Caller, job: job_events.ChatJob) -> job_events.ChatJob:
    """`X-Ayush-Cache: semantic` (or the tenant's `semantic_cache`): the response cache, and
    the semantic cache after it; `X-Ayush-Cache-Threshold` replaces the similarity needed."""
    header = request.headers.get("x-ayush-cache")
    if header is not None:
        wanted = header.strip().lower() == "semantic"
    else:
        wanted = bool(caller.settings.get("semantic_cache", False))
    if not wanted:
        return job
    threshold = request.headers.get("x-ayush-cache-threshold")
    update: dict[str, Any] = {"cache": True, "semantic_cache": True}
    if threshold is not None:
        update["semantic_threshold"] = _threshold(threshold)
    return job.model_copy(update=update)


def _threshold(value: str) -> float:
    try:
        threshold = float(value)
    except ValueError:
        threshold = -1.0
    if not 0 < threshold <= 1:
        raise oe.OpenAIError(
            400,
            "X-Ayush-Cache-Threshold is a similarity above 0 and at most 1",
            "invalid_request_error",
            "invalid_value",
        )
    return threshold


def _cache_headers(first: dict[str, Any]) -> dict[str, str]:
    """What the caches did: `hit` (the response cache), `semantic-hit` with the similarity
    of the cached question, or `miss`."""
    similarity = first.get("similarity")
    if similarity is not None:
        return {"X-Ayush-Cache": "semantic-hit", "X-Ayush-Cache-Similarity": f"{similarity:.4f}"}
    return {"X-Ayush-Cache": "hit" if first.get("cached") else "miss"}


def _with(error: oe.OpenAIError, headers: dict[str, str]) -> oe.OpenAIError:
    error.headers = {**headers, **error.headers}
    return error
