"""The model-calls group: runs chat jobs on their provider and streams the answer.

| topic            | event type       | handler              |
|------------------|------------------|----------------------|
| ai.job.requested | ai.job.requested | handle_job_requested |

The same handlers serve the batch lane (`ai.job.requested.batch`) as the
`model-calls-batch` group, a separate consumer with its own concurrency.

Idempotent by event id: the result row and the claim of the event commit in
one transaction; the follow-up events have ids derived from the request's id,
so re-publishing them after a crash is deduplicated downstream.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from infra.db import jobs as job_store
from infra.db.engine import Database
from infra.db.models import JobResult
from infra.errors import PermanentError, TransientError
from infra.kafka.consumer import Handler
from infra.kafka.publisher import Publisher
from infra.pricing import PriceTable
from infra.providers.base import ChatRequest, Completion, Message
from infra.providers.router import ProviderSet
from infra.redis import JobStreams
from infra.settings import Settings
from schemas import jobs as ev
from schemas import topics
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.ids import derived_id, uuid7
from schemas.versions import schema_version

log = logging.getLogger(__name__)

GROUP = "model-calls"
TOPICS = [topics.AI_JOB_REQUESTED.name]
BATCH_GROUP = "model-calls-batch"
BATCH_TOPICS = [topics.AI_JOB_REQUESTED_BATCH.name]
SYSTEM = Actor(kind="system", id=GROUP)


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    streams: JobStreams
    publisher: Publisher
    providers: ProviderSet
    prices: PriceTable
    # Replay side mode: routes the request and stops there. No provider call,
    # no stream, no event: replaying history must not bill anyone twice.
    replay: bool = False
    # Batch lines have no one watching them live: no word-by-word deltas.
    stream_deltas: bool = True


def handlers(ports: Ports) -> Mapping[str, Handler]:
    async def on_job_requested(raw: RawEnvelope) -> None:
        await handle_job_requested(raw, ports)

    return {ev.JOB_REQUESTED: on_job_requested}


async def handle_job_requested(raw: RawEnvelope, ports: Ports) -> None:
    request = ev.JobRequested.model_validate(raw.payload)
    if ports.replay:
        _replay(request, ports)
        return
    if await job_store.is_processed(ports.db, GROUP, raw.id):
        await _announce_again(raw, request, ports)
        return
    try:
        provider, provider_model = ports.providers.resolve(request.job.model)
    except PermanentError as exc:
        await _fail(raw, request, str(exc), ports)
        return
    attempt = await job_store.mark_running(ports.db, request.job_id, provider.name)
    if attempt == 0:
        return  # finished by an earlier delivery that has not claimed yet: nothing to add
    await ports.streams.append(
        request.job_id,
        "status",
        {
            "status": "running",
            "provider": provider.name,
            "model": request.job.model,
            "attempt": attempt,
        },
    )
    await ports.publisher.publish(
        topics.AI_JOB_LIFECYCLE.name,
        _follow_up(raw, ev.JOB_STARTED, ev.JobStarted(
            job_id=request.job_id, provider=provider.name, model=request.job.model
        ), f"started:{attempt}"),
    )  # fmt: skip
    chat = ChatRequest(
        model=provider_model,
        messages=[Message(m.role, m.content) for m in request.job.messages],
        temperature=request.job.temperature,
        max_tokens=request.job.max_tokens,
    )
    try:
        completion = await _call_with_retries(raw, chat, request, provider.name, ports)
    except (PermanentError, TransientError) as exc:
        await _fail(raw, request, str(exc), ports)
        return
    result = JobResult(
        job_id=request.job_id,
        text=completion.text,
        finish_reason=completion.finish_reason,
        provider=provider.name,
        model=request.job.model,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cost_usd=ports.prices.cost(
            request.job.model, completion.input_tokens, completion.output_tokens
        ),
        event_id=raw.id,
    )
    if await job_store.complete_job(ports.db, GROUP, raw.id, result):
        await _announce_success(raw, request, result, ports)


def _replay(request: ev.JobRequested, ports: Ports) -> None:
    """Side mode: make the routing decision again and report it, touching nothing."""
    try:
        provider, provider_model = ports.providers.resolve(request.job.model)
    except PermanentError as exc:
        log.info("replay: job %s would fail: %s", request.job_id, exc)
        return
    log.info("replay: job %s would run on %s as %s", request.job_id, provider.name, provider_model)


async def _call_with_retries(
    raw: RawEnvelope, chat: ChatRequest, request: ev.JobRequested, provider_name: str, ports: Ports
) -> Completion:
    settings = ports.settings
    job_id = request.job_id
    backoff = wait_exponential_jitter(
        initial=settings.provider_backoff_initial_s, max=settings.provider_backoff_max_s
    )

    def wait(state: RetryCallState) -> float:
        # A vendor's Retry-After beats our own guess.
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, settings.provider_backoff_max_s)
        return float(backoff(state))

    async def delta(text: str) -> None:
        if ports.stream_deltas:
            await ports.streams.append(job_id, "delta", {"text": text})

    last_error: list[str] = []

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(settings.provider_max_attempts),
        wait=wait,
        reraise=True,
    ):
        with attempt:
            number = attempt.retry_state.attempt_number
            if number > 1:
                # tenacity clears `outcome` before the next try: keep our own
                error = last_error[-1] if last_error else ""
                # Tells clients to drop the partial text of the failed try.
                await ports.streams.append(
                    job_id,
                    "status",
                    {
                        "status": "retrying",
                        "provider": provider_name,
                        "attempt": number,
                        "error": error,
                    },
                )
                await _announce_retry(raw, request, provider_name, number, error, ports)
            try:
                return await ports.providers.resolve(request.job.model)[0].stream_chat(chat, delta)
            except TransientError as exc:
                last_error.append(str(exc))
                raise
    raise AssertionError("unreachable: tenacity reraises the last error")


async def _fail(raw: RawEnvelope, request: ev.JobRequested, error: str, ports: Ports) -> None:
    if not await job_store.fail_job(ports.db, GROUP, raw.id, request.job_id, error):
        return
    await ports.streams.append(request.job_id, "error", {"message": error})
    await ports.streams.append(request.job_id, "done", {"status": "failed"})
    await ports.publisher.publish(
        topics.AI_JOB_LIFECYCLE.name,
        _follow_up(raw, ev.JOB_FAILED, ev.JobFailed(job_id=request.job_id, error=error), "failed"),
    )


async def _announce_success(
    raw: RawEnvelope, request: ev.JobRequested, result: JobResult, ports: Ports
) -> None:
    usage = ev.TokenUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    await ports.streams.append(
        request.job_id,
        "result",
        {
            "text": result.text,
            "finish_reason": result.finish_reason,
            "provider": result.provider,
            "model": result.model,
            "usage": usage.model_dump(),
        },
    )
    await ports.streams.append(request.job_id, "done", {"status": "succeeded"})
    await _publish_outcome(raw, request, result, ports)


async def _publish_outcome(
    raw: RawEnvelope, request: ev.JobRequested, result: JobResult, ports: Ports
) -> None:
    usage = ev.TokenUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    await ports.publisher.publish_many(
        [
            (
                topics.AI_JOB_LIFECYCLE.name,
                _follow_up(raw, ev.JOB_SUCCEEDED, ev.JobSucceeded(
                    job_id=request.job_id, provider=result.provider, model=result.model,
                    usage=usage, finish_reason=result.finish_reason,
                    text=result.text, cost_usd=result.cost_usd,
                ), "succeeded"),
            ),
            (
                topics.USAGE_RECORDED.name,
                _follow_up(raw, ev.USAGE_RECORDED, ev.UsageRecorded(
                    job_id=request.job_id, api_key_id=request.api_key_id,
                    user_id=request.job.user_id, provider=result.provider, model=result.model,
                    input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                    cost_usd=result.cost_usd,
                ), "usage"),
            ),
        ]
    )  # fmt: skip


async def _announce_again(raw: RawEnvelope, request: ev.JobRequested, ports: Ports) -> None:
    """A redelivered, already handled event: re-publish its outcome with the same ids.

    Covers a crash between the database commit and the publish; consumers of
    the follow-up events drop the duplicates by id.
    """
    found = await job_store.get_job(ports.db, raw.tenant_id, request.job_id)
    if found is not None and found.result is not None:
        await _publish_outcome(raw, request, found.result, ports)
    elif found is not None and found.job.status == "failed":
        failed = ev.JobFailed(job_id=request.job_id, error=found.job.error or "failed")
        await ports.publisher.publish(
            topics.AI_JOB_LIFECYCLE.name, _follow_up(raw, ev.JOB_FAILED, failed, "failed")
        )


async def _announce_retry(
    raw: RawEnvelope, request: ev.JobRequested, provider: str, number: int, error: str, ports: Ports
) -> None:
    """Retries are part of the audit trail; a lost announcement must not fail the job."""
    payload = ev.JobRetrying(
        job_id=request.job_id, provider=provider, attempt=number, error=error[:2000]
    )
    try:
        await ports.publisher.publish(
            topics.AI_JOB_LIFECYCLE.name,
            _follow_up(raw, ev.JOB_RETRYING, payload, f"retrying:{uuid7()}"),
        )
    except TransientError as exc:
        log.warning("job %s: retry event not published: %s", request.job_id, exc)


def _follow_up(raw: RawEnvelope, type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    return Envelope[Any](
        id=derived_id(raw.id, purpose),
        type=type_,
        version=schema_version(payload),
        tenant_id=raw.tenant_id,
        actor=SYSTEM,
        correlation_id=raw.correlation_id,
        causation_id=raw.id,
        payload=payload,
    )
