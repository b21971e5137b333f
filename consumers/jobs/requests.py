"""A requested job as the providers take it, and as the jobs table keeps it."""

from __future__ import annotations

from infra.db.models import Job
from infra.providers.base import ChatRequest, Image, Message, Tool, ToolCall
from schemas import jobs as job_events
from schemas.envelope import Envelope


def chat_request(job: job_events.ChatJob) -> ChatRequest:
    forced = job.tool_choice.name if isinstance(job.tool_choice, job_events.ForcedTool) else None
    return ChatRequest(
        model=job.model,
        messages=[
            Message(
                m.role,
                m.content,
                tuple(ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls or ()),
                m.tool_call_id,
                tuple(_part(p) for p in m.parts or ()),
                _marker(m.cache_control),
            )
            for m in job.messages
        ],
        temperature=job.temperature,
        top_p=job.top_p,
        top_k=job.top_k,
        seed=job.seed,
        presence_penalty=job.presence_penalty,
        frequency_penalty=job.frequency_penalty,
        response_format=job.response_format.model_dump(exclude_none=True)
        if job.response_format
        else None,
        max_tokens=job.max_tokens,
        stop=tuple(job.stop or ()),
        tools=tuple(
            Tool(t.name, t.description, t.parameters, _marker(t.cache_control))
            for t in job.tools or ()
        ),
        tool_choice=job.tool_choice if isinstance(job.tool_choice, str) else None,
        forced_tool=forced,
    )


def _marker(cache: job_events.CacheControl | None) -> dict[str, str] | None:
    return None if cache is None else cache.model_dump(exclude_none=True)


def _part(part: job_events.TextPart | job_events.ImagePart) -> str | Image:
    return part.text if isinstance(part, job_events.TextPart) else Image(part.url, part.detail)


def queued_job(event: Envelope[job_events.JobRequested]) -> Job:
    """The job row of a request, as it is before any group started it."""
    request = event.payload
    job = request.job
    return Job(
        id=request.job_id,
        tenant_id=event.tenant_id,
        api_key_id=request.api_key_id,
        user_id=job.user_id,
        kind=job.kind,
        model=job.model,
        status="queued",
        request=job.model_dump(mode="json"),
        job_metadata=dict(job.metadata),
        request_event_id=event.id,
        created_at=event.occurred_at,
    )
