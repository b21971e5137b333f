"""The events that say how a job ended, whichever group answered it.

Their ids are derived from the request's id and a purpose, so publishing them again
after a crash is the same events, which consumers drop by id.
"""

from __future__ import annotations

from typing import Any

from infra.db.jobs import Outcome
from infra.db.models import JobResult
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.versions import follow_up

Outgoing = list[tuple[str, Envelope[Any]]]


# A job's answer as stored: a result row, or its plain value.
Answer = Outcome | JobResult


def succeeded(
    cause: Envelope[Any], request: job_events.JobRequested, answer: Answer, actor: Actor
) -> Outgoing:
    """`ai.job.succeeded` with the answer, and the `usage.recorded` that bills it."""
    kind = "embedding" if request.job.kind == "embedding" else "model_call"
    done = job_events.JobSucceeded(
        job_id=request.job_id,
        provider=answer.provider,
        model=answer.model,
        usage=job_events.TokenUsage(
            input_tokens=answer.input_tokens, output_tokens=answer.output_tokens
        ),
        finish_reason=answer.finish_reason,
        cached=answer.cached,
        text=answer.text,
        cost_usd=answer.cost_usd,
        user_id=request.job.user_id,
    )
    usage = job_events.UsageRecorded(
        job_id=request.job_id,
        api_key_id=request.api_key_id,
        user_id=request.job.user_id,
        kind=kind,
        provider=answer.provider,
        model=answer.model,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        cost_usd=answer.cost_usd,
        cached=answer.cached,
        # Prompt-cache counts; for a job a named route (`model: "auto"`) chose the model of,
        # which route, and why.
        extra={
            **_prompt_cache(answer),
            **({"route": request.job.route.model_dump()} if request.job.route else {}),
        },
    )
    return [
        (
            topics.AI_JOB_LIFECYCLE.name,
            follow_up(cause, job_events.JOB_SUCCEEDED, done, "succeeded", actor),
        ),
        (
            topics.USAGE_RECORDED.name,
            follow_up(cause, job_events.USAGE_RECORDED, usage, "usage", actor),
        ),
    ]


def spent(
    cause: Envelope[Any], request: job_events.JobRequested, answer: Outcome, actor: Actor
) -> Outgoing:
    """The `usage.recorded` of a job that failed after calling the model (a tool loop at
    its step limit): the calls were made, and are billed. Its id is the one a success
    would have had: the job is billed once."""
    return [message for message in succeeded(cause, request, answer, actor)
            if message[0] == topics.USAGE_RECORDED.name]  # fmt: skip


def failed(cause: Envelope[Any], job_id: Any, error: str, actor: Actor) -> Outgoing:
    """`ai.job.failed` with its error."""
    payload = job_events.JobFailed(job_id=job_id, error=error)
    return [
        (
            topics.AI_JOB_LIFECYCLE.name,
            follow_up(cause, job_events.JOB_FAILED, payload, "failed", actor),
        )
    ]


def _prompt_cache(answer: Answer) -> dict[str, Any]:
    """The input tokens read from and written to the vendor's prompt cache, where any (a
    batch line's result does not keep them)."""
    counts = {
        "cached_input_tokens": getattr(answer, "cached_input_tokens", 0),
        "cache_write_input_tokens": getattr(answer, "cache_write_input_tokens", 0),
    }
    return {name: count for name, count in counts.items() if count}
