"""What a finished job tells the world: its stream's last entries and its follow-up events.

Follow-up events have ids derived from the request's id, so publishing them
again after a crash is deduplicated downstream.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from consumers.groups.model_calls.answers import Answer
from consumers.groups.model_calls.ports import GROUP, SYSTEM, Ports
from consumers.jobs import memory_recall as chat_memory
from consumers.jobs import outcomes
from infra.channels import Mirror, job_status_feed
from infra.db import jobs as job_store
from infra.db.jobs import Outcome
from schemas import jobs as job_events
from schemas import topics, versions
from schemas.envelope import Envelope
from schemas.money import usd_text


async def emit(
    ports: Ports,
    request: job_events.JobRequested,
    type_: str,
    data: dict[str, Any],
    also: list[Mirror] | None = None,
) -> None:
    """One entry of the job's stream; `also`: entries for live channels (the user's feed),
    appended by the same call."""
    # A caller waiting on a reply channel (the gateway) reads the answer, never the
    # status entries: they stay in the stream, off the channel.
    notify = None if type_ == "status" else request.reply_to
    await ports.streams.append(request.job_id, type_, data, notify=notify, also=also)


def user_feed(raw: Envelope[Any], request: job_events.JobRequested, status: str) -> list[Mirror]:
    """The job's status for its user's feed (none for a job of no user)."""
    job = request.job
    return job_status_feed(raw.tenant_id, job.user_id, request.job_id, status, job.kind, job.model)


async def fail(
    raw: Envelope[Any],
    request: job_events.JobRequested,
    error: str,
    ports: Ports,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    code: str | None = None,
) -> None:
    if not await job_store.fail_job(ports.db, GROUP, raw.id, request.job_id, error):
        return
    await ports.streams.append_many(
        request.job_id,
        [
            (
                "error",
                {"message": error, "status": status, "retry_after": retry_after, "code": code},
            ),
            ("done", {"status": "failed"}),
        ],
        notify=request.reply_to,
        also=user_feed(raw, request, "failed"),
    )
    await ports.publisher.publish(
        topics.AI_JOB_LIFECYCLE.name,
        follow_up(
            raw,
            job_events.JOB_FAILED,
            job_events.JobFailed(
                job_id=request.job_id,
                error=error,
                retryable=status in (429, 502, 503, 504),
                status=status,
            ),
            "failed",
        ),
    )


async def announce_success(
    raw: Envelope[Any],
    request: job_events.JobRequested,
    answer: Answer,
    ports: Ports,
    *,
    also: list[tuple[str, Envelope[Any]]] | None = None,
) -> None:
    """The answer on the job's stream (its caller has it then), then the outcome's events
    (and `also`'s) on Kafka."""
    result = answer.result
    usage = {
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        # Of `input_tokens`: read from the vendor's prompt cache, and written to it.
        "cached_input_tokens": result.cached_input_tokens,
        "cache_write_input_tokens": result.cache_write_input_tokens,
    }
    data: dict[str, Any] = {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "provider": result.provider,
        "model": result.model,
        "usage": usage,
        "tool_calls": result.tool_calls,
        "cached": result.cached,
        "cost_usd": usd_text(result.cost_usd),
        # When it ended (Unix seconds): a Response's `completed_at`.
        "completed_at": int(time.time()),
    }
    if answer.embeddings is not None:
        data["embeddings"] = answer.embeddings
    if answer.similarity is not None:
        data["similarity"] = answer.similarity
    await ports.streams.append_many(
        request.job_id,
        [("result", data), ("done", {"status": "succeeded"})],
        notify=request.reply_to,
        also=user_feed(raw, request, "succeeded"),
    )
    await publish_outcome(raw, request, result, ports, also or ())


async def publish_outcome(
    raw: Envelope[Any],
    request: job_events.JobRequested,
    result: Outcome,
    ports: Ports,
    also: Sequence[tuple[str, Envelope[Any]]] = (),
) -> None:
    await ports.publisher.publish_many(
        [
            *outcomes.succeeded(raw, request, result, SYSTEM),
            *chat_memory.remember_exchange(
                raw, request.job, result.text, SYSTEM, api_key_id=request.api_key_id
            ),
            *also,
        ]
    )


async def announce_again(
    raw: Envelope[Any], request: job_events.JobRequested, ports: Ports
) -> None:
    """A redelivered, already handled event: re-publish its outcome with the same ids.

    Covers a crash between the database commit and the publish; consumers of
    the follow-up events drop the duplicates by id.
    """
    found = await job_store.get_job(ports.db, raw.tenant_id, request.job_id)
    if found is not None and found.result is not None:
        await publish_outcome(raw, request, Outcome.of(found.result), ports)
    elif found is not None and found.job.status == "failed":
        # A batch counts its lines by these outcomes: a lost "failed" would
        # leave the batch waiting for a line that will never finish.
        error = found.job.error or "failed"
        await ports.publisher.publish_many(outcomes.failed(raw, request.job_id, error, SYSTEM))


def follow_up(raw: Envelope[Any], type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    return versions.follow_up(raw, type_, payload, purpose, SYSTEM)
