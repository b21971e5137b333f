"""OpenAI chat completion requests <-> ChatJob, in one place.

The gateway's `/v1/chat/completions` bodies and the batch input lines speak
OpenAI's chat completions format (schemas.openai.ChatCompletionRequest);
everything behind them speaks ChatJob. Both convert here, so a batch line
accepts what the gateway accepts (tools, tool_choice, stop, ...), and batch
output lines are shaped as the gateway answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.jobs import (
    ChatJob,
    ChatMessage,
    ForcedTool,
    ImagePart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)
from schemas.openai import ChatCompletionRequest, WireMessage


class BodyError(ValueError):
    """A chat completion body that cannot become a ChatJob; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def chat_job(
    body: ChatCompletionRequest, cache: bool = False, metadata: dict[str, str] | None = None
) -> ChatJob:
    """OpenAI's request as our job (`metadata` replaces the body's own)."""
    choice: Any = body.tool_choice
    if choice is not None and not isinstance(choice, str):
        choice = ForcedTool(name=choice.function.name)
    return ChatJob(
        model=body.model,
        messages=[_message(m) for m in body.messages],
        user_id=body.end_user(),
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        response_format=_response_format(body),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        metadata=(body.metadata or {}) if metadata is None else metadata,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        tools=[
            Tool(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters or {},
            )
            for t in body.tools
        ]
        if body.tools
        else None,
        tool_choice=choice,
        cache=cache,
        memory=body.memory,
        reasoning_effort=body.reasoning_effort,
        ayush_tools=body.ayush_tools,
    )


def _response_format(body: ChatCompletionRequest) -> ResponseFormat | None:
    wire = body.response_format
    if wire is None or wire.type == "text":
        return None
    schema = (
        wire.json_schema.model_dump(by_alias=True, exclude_none=True) if wire.json_schema else None
    )
    return ResponseFormat(type=wire.type, json_schema=schema)


def _message(m: WireMessage) -> ChatMessage:
    calls = [
        ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
        for c in m.tool_calls or ()
    ]
    return ChatMessage(
        role="system" if m.role == "developer" else m.role,
        content=m.text(),
        parts=_parts(m) if m.has_images() else None,
        tool_calls=calls or None,
        tool_call_id=m.tool_call_id,
    )


def _parts(m: WireMessage) -> list[TextPart | ImagePart]:
    assert isinstance(m.content, list)
    return [
        ImagePart(url=p.image_url.url, detail=p.image_url.detail)
        if p.image_url is not None
        else TextPart(text=p.text or "")
        for p in m.content
    ]


def chat_job_from_body(body: Any, metadata: dict[str, str] | None = None) -> ChatJob:
    """A ChatJob from an untyped request body (a batch line's); BodyError names the field."""
    if not isinstance(body, dict):
        raise BodyError("body must be a JSON object", "body")
    try:
        request = ChatCompletionRequest.model_validate(body)
        extra = {**(request.metadata or {}), **(metadata or {})}
        return chat_job(request, metadata=extra)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise BodyError(first["msg"], f"body.{field}" if field else "body") from exc


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `chat.completion` response body, shaped as the gateway's `/v1/chat/completions` answers."""
    calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for c in tool_calls or ()
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    finish = finish_reason or ("tool_calls" if calls else "stop")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }
