"""The model-calls group: runs chat and embedding jobs on their deployments, streams the answer.

Idempotent by event id: the result row and the claim of the event commit in
one statement; the follow-up events have ids derived from the request's id,
so re-publishing them after a crash is deduplicated downstream (outcomes.py).
Routing, retries and fallbacks are the gateway's (infra/routing); a job that
asks for the response cache is answered from it when an identical request of
the same tenant was answered before, at zero cost (answers.py); one that asks for
the semantic cache, when a question of the same meaning was (semantic.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from consumers.groups.model_calls import semantic, turns
from consumers.groups.model_calls.answers import Answer, cache_entry, cache_key, from_cache, priced
from consumers.groups.model_calls.loop import ToolStepLimit, converse
from consumers.groups.model_calls.outcomes import (
    announce_again,
    announce_success,
    emit,
    fail,
    follow_up,
    user_feed,
)
from consumers.groups.model_calls.ports import GROUP, SYSTEM, Ports, SemanticCache
from consumers.groups.model_calls.recall_usage import MeteredRecall
from consumers.groups.model_calls.task_tools import TaskTools
from consumers.groups.model_calls.tools import ToolKind, toolbox
from consumers.jobs import memory_recall as chat_memory
from consumers.jobs import outcomes as job_outcomes
from consumers.jobs.requests import chat_request
from consumers.jobs.retries import announce_retry
from infra.db import jobs as job_store
from infra.errors import PermanentError, TransientError
from infra.kafka.group import Group
from infra.kafka.policies import Each, calling_models
from infra.providers.base import ChatRequest, Completion
from infra.routing.gateway import Served
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Envelope

__all__ = ["Ports", "SemanticCache", "group"]

Request = Envelope[job_events.JobRequested]

log = logging.getLogger(__name__)

# The built-in tool kinds a job may enable (`ayush_tools`), by name.
TOOL_KINDS: dict[str, ToolKind] = {"tasks": TaskTools()}

group: Group[Ports] = Group(
    GROUP, [topics.AI_JOB_REQUESTED.name], lambda settings: Each(settings.model_calls_concurrency)
)


@group.on(job_events.JOB_REQUESTED, job_events.JobRequested, retry=calling_models)
async def handle_job_requested(raw: Request, ports: Ports) -> None:
    request = raw.payload
    if ports.replay:
        _replay(request, ports)
        return
    job = request.job
    try:
        route = ports.gateway.config.route_for(job.model)
    except PermanentError as exc:
        route, unknown = None, exc
    provider = route.deployments[0].vendor if route else None
    attempt = await ports.writes.start(_new_job(raw, request), provider)
    if attempt == 0:
        # The job is finished. If this very event was handled, its follow-ups may
        # not have reached Kafka before a crash: publish them again.
        if await job_store.is_processed(ports.db, GROUP, raw.id):
            await announce_again(raw, request, ports)
            if job.kind == "response":
                await turns.ended_again(raw, request, ports)
        return
    if route is None or provider is None:
        await _failed(raw, request, str(unknown), ports, status=404)
        return
    # The "running" entry, the broker's acknowledgement of "started" and a response's
    # "in_progress" go out alongside the call: they need not delay the answer, only
    # precede what the stream, the log and the response say after them.
    running = asyncio.ensure_future(
        emit(
            ports,
            request,
            "status",
            {
                "status": "running",
                "provider": provider,
                "model": job.model,
                "attempt": attempt,
            },
            also=user_feed(raw, request, "running"),
        )
    )
    started: asyncio.Future[Any] = asyncio.gather(
        ports.publisher.publish(
            topics.AI_JOB_LIFECYCLE.name,
            follow_up(
                raw,
                job_events.JOB_STARTED,
                job_events.JobStarted(job_id=request.job_id, provider=provider, model=job.model),
                f"started:{attempt}",
            ),
        ),
        turns.started(raw.tenant_id, request, ports),
    )
    # Recalled memories change as the user's store does: such answers are never shared;
    # an answer after built-in tools ran acted on the user's things, and is never reused.
    use_cache = job.cache and job.memory is None and not job.ayush_tools
    try:
        model = ports.gateway.config.canonical(job.model)
        key = cache_key(raw.tenant_id, job, model)
        answer = await from_cache(request, key, ports) if use_cache else None
        # The semantic cache after the exact one: a miss there embeds the question.
        place = None if answer else await semantic.lookup(raw, request, model, ports)
        if place is not None:
            answer = await semantic.from_cache(request, place, ports)
        cached = answer is not None
        if answer is None:
            answer = await _call(raw, request, ports, running)
    except (PermanentError, TransientError) as exc:
        await running
        await started
        if isinstance(exc, ToolStepLimit):  # its model calls were made: they are billed
            await ports.publisher.publish_many(job_outcomes.spent(raw, request, exc.spent, SYSTEM))
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        await _failed(
            raw,
            request,
            str(exc),
            ports,
            status=exc.status,
            retry_after=retry_after,
            code=getattr(exc, "code", None),
        )
        return
    finally:
        await asyncio.wait([running, started])
    await running
    await started
    ended = await turns.finished(raw, request, answer, ports) if job.kind == "response" else None
    if not await ports.writes.complete(raw.id, answer.result):
        return
    if use_cache and not cached:
        await ports.cache.put(key, cache_entry(answer), ports.settings.response_cache_ttl_s)
    if place is not None and not cached:
        await semantic.store(place, answer, ports)
    await announce_success(raw, request, answer, ports, also=turns.ended_events(raw, ended))
    if ended is not None:
        await turns.tell(raw, request, ended, ports)
    if job.kind == "response":
        await turns.titled(raw, request, answer, ports)


def _replay(request: job_events.JobRequested, ports: Ports) -> None:
    """Side mode: make the routing decision again and report it, touching nothing."""
    try:
        route = ports.gateway.config.route_for(request.job.model)
    except PermanentError as exc:
        log.info("replay: job %s would fail: %s", request.job_id, exc)
        return
    first = route.deployments[0]
    log.info("replay: job %s would run on %s as %s", request.job_id, first.vendor, first.model)


async def _call(
    raw: Request, request: job_events.JobRequested, ports: Ports, running: Awaitable[None]
) -> Answer:
    job = request.job

    async def on_retry(info: dict[str, Any]) -> None:
        # Tells clients to drop the partial text of the failed try.
        await running
        await emit(ports, request, "status", info)
        # Part of the audit trail; a lost one does not fail the job.
        await announce_retry(ports.publisher, raw, request.job_id, info, SYSTEM)

    # A response's text also goes to its conversation's and user's live channels, whether
    # or not its caller reads the job's stream.
    also = turns.delta_announcer(raw.tenant_id, request, ports)
    deltas = _Deltas(ports, request, running, also)
    on_delta = deltas.add if request.live_text or also is not None else _no_delta

    if job.kind == "embedding":
        (vectors, tokens), served = await ports.gateway.embed(
            job.model, job.input or [], job.dimensions, on_retry
        )
        return Answer(priced(request, served, ports, "", None, tokens, 0, None), vectors)
    context = None
    if job.kind == "response":
        job, context = await turns.assembled(raw.tenant_id, job, ports)
    chat = chat_request(job)
    recall = None if ports.recall is None else MeteredRecall(ports.recall, raw, request, ports)
    messages = await chat_memory.with_memories(raw, job, list(chat.messages), recall)

    async def ask(chat: ChatRequest) -> tuple[Completion, Served]:
        try:
            return await turns.unless_cancelled(
                ports, request, ports.gateway.chat(job.model, chat, on_delta, on_retry)
            )
        finally:
            await deltas.flushed()

    box = await toolbox(TOOL_KINDS, job, ports)
    if box:
        outcome = await converse(raw, replace(chat, messages=messages), box, ask, ports, running)
        return Answer(outcome, context=context)
    completion, served = await ask(replace(chat, messages=messages))
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
    result = priced(
        request,
        served,
        ports,
        completion.text,
        completion.finish_reason,
        completion.input_tokens,
        completion.output_tokens,
        calls or None,
        completion.cached_input_tokens,
        completion.cache_write_input_tokens,
    )
    return Answer(result, context=context)


async def _no_delta(text: str) -> None:
    return None


class _Deltas:
    """Text deltas on their way to the job's stream, in order, coalesced.

    An upstream can stream faster than one Redis round trip per token; while
    one append is in flight, the next pieces gather and go as one entry. The
    first waits for the job's "running" entry, which must come before it.
    """

    def __init__(
        self,
        ports: Ports,
        request: job_events.JobRequested,
        after: Awaitable[None],
        also: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._ports = ports
        self._request = request
        self._after = after
        self._also = also  # sends each entry's text elsewhere too (live channels)
        self._pending: list[str] = []
        self._sender: asyncio.Task[None] | None = None

    async def add(self, text: str) -> None:
        self._pending.append(text)
        if self._sender is None or self._sender.done():
            if self._sender is not None:
                await self._sender  # surfaces a failed append
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        await self._after
        while self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            if self._request.live_text:
                await emit(self._ports, self._request, "delta", {"text": text})
            if self._also is not None:
                await self._also(text)

    async def flushed(self) -> None:
        if self._sender is not None:
            await self._sender
        if self._pending:
            await self._send()


def _new_job(raw: Request, request: job_events.JobRequested) -> job_store.NewJob:
    job = request.job
    return job_store.NewJob(
        id=request.job_id,
        tenant_id=raw.tenant_id,
        api_key_id=request.api_key_id,
        user_id=job.user_id,
        kind=job.kind,
        model=job.model,
        request=job.model_dump(mode="json"),
        metadata=dict(job.metadata),
        request_event_id=raw.id,
    )


@group.gives_up(job_events.JOB_REQUESTED)
async def give_up(raw: Request, reason: str, ports: Ports) -> None:
    if not ports.replay:
        await _failed(raw, raw.payload, reason, ports)


async def _failed(
    raw: Request,
    request: job_events.JobRequested,
    error: str,
    ports: Ports,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    code: str | None = None,
) -> None:
    """Fail the job; a response job's response ends failed (or cancelled) first."""
    if request.job.kind == "response":
        await turns.failed(raw, request, error, ports, status=status, code=code)
    await fail(raw, request, error, ports, status=status, retry_after=retry_after, code=code)
