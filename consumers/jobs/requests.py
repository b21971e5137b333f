"""A chat job as the providers take it: what every group that calls a model sends."""

from __future__ import annotations

from infra.providers.base import ChatRequest, Image, Message, Tool, ToolCall
from schemas import jobs as job_events


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
            )
            for m in job.messages
        ],
        temperature=job.temperature,
        top_p=job.top_p,
        seed=job.seed,
        presence_penalty=job.presence_penalty,
        frequency_penalty=job.frequency_penalty,
        response_format=job.response_format.model_dump(exclude_none=True)
        if job.response_format
        else None,
        max_tokens=job.max_tokens,
        stop=tuple(job.stop or ()),
        tools=tuple(Tool(t.name, t.description, t.parameters) for t in job.tools or ()),
        tool_choice=job.tool_choice if isinstance(job.tool_choice, str) else None,
        forced_tool=forced,
    )


def _part(part: job_events.TextPart | job_events.ImagePart) -> str | Image:
    return part.text if isinstance(part, job_events.TextPart) else Image(part.url, part.detail)
