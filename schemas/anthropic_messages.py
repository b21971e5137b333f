"""Anthropic Messages API requests (`POST /v1/messages`) <-> ChatJob, in one place.

Bodies are taken in Anthropic's own wire shape: lenient about fields we do
not use (clients send many), strict about the ones we do. They become a
ChatJob, the one request every model behind the gateway takes, so a Claude
deployment receives what the port can carry of it (cache breakpoints
included) and any other model a translation.

A message's content blocks become messages of our own, in order: text and
images gather into one message until a block marks a cache breakpoint
(`cache_control`), which ends it; each `tool_result` is a `tool` message;
`tool_use` blocks are the assistant message's tool calls. Neighbours of
one role are merged again on the way to Anthropic.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from schemas.jobs import (
    CacheControl,
    ChatJob,
    ChatMessage,
    ForcedTool,
    ImagePart,
    TextPart,
    Tool,
    ToolCall,
)
from schemas.request import RequestModel

# Our finish reasons as Anthropic's stop reasons.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


class _Wire(RequestModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireCacheControl(_Wire):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(_Wire):
    type: Literal["text"]
    text: str
    cache_control: WireCacheControl | None = None


class ImageSource(_Wire):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None

    def as_url(self) -> str:
        if self.type == "url":
            return self.url or ""
        return f"data:{self.media_type or 'image/png'};base64,{self.data or ''}"


class ImageBlock(_Wire):
    type: Literal["image"]
    source: ImageSource
    cache_control: WireCacheControl | None = None


class ToolUseBlock(_Wire):
    type: Literal["tool_use"]
    id: str = Field(max_length=200)
    name: str = Field(max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)
    cache_control: WireCacheControl | None = None


ResultPart = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str = Field(max_length=200)
    content: str | list[ResultPart] = ""
    is_error: bool | None = None
    cache_control: WireCacheControl | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        # A tool's images have no place in a tool message: their text goes alone.
        return "\n".join(p.text for p in self.content if isinstance(p, TextBlock))


Block = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")
]


class WireMessage(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class WireTool(_Wire):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: WireCacheControl | None = None


class WireToolChoice(_Wire):
    type: Literal["auto", "any", "none", "tool"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class WireMetadata(_Wire):
    user_id: str | None = Field(default=None, max_length=200)


class CountTokensRequest(_Wire):
    """`POST /v1/messages/count_tokens`: a Messages request without its output settings."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[WireMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[WireTool] | None = None
    tool_choice: WireToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    """`POST /v1/messages`, as Anthropic's API takes it. `top_k` reaches Anthropic's
    models only; the others have no such setting and go without it."""

    max_tokens: int = Field(ge=1, le=1_000_000)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    metadata: WireMetadata | None = None
    stream: bool = False


def messages_job(body: CountTokensRequest, cache: bool = False) -> ChatJob:
    """Anthropic's request as our job (raises pydantic's ValidationError as ChatJob does)."""
    full = body if isinstance(body, MessagesRequest) else None
    return ChatJob(
        model=body.model,
        messages=[*_system(body.system), *(m for w in body.messages for m in _messages(w))],
        user_id=full.metadata.user_id if full and full.metadata else None,
        temperature=full.temperature if full else None,
        top_p=full.top_p if full else None,
        top_k=full.top_k if full else None,
        max_tokens=full.max_tokens if full else None,
        stop=full.stop_sequences if full else None,
        tools=[
            Tool(
                name=t.name,
                description=t.description,
                parameters=t.input_schema,
                cache_control=_cache(t.cache_control),
            )
            for t in body.tools
        ]
        if body.tools
        else None,
        tool_choice=_tool_choice(body.tool_choice),
        cache=cache,
    )


def _cache(wire: WireCacheControl | None) -> CacheControl | None:
    return None if wire is None else CacheControl(type=wire.type, ttl=wire.ttl)


def _system(system: str | list[TextBlock] | None) -> list[ChatMessage]:
    if system is None:
        return []
    if isinstance(system, str):
        return [ChatMessage(role="system", content=system)] if system else []
    return [
        ChatMessage(role="system", content=b.text, cache_control=_cache(b.cache_control))
        for b in system
    ]


def _tool_choice(choice: WireToolChoice | None) -> Any:
    if choice is None:
        return None
    if choice.type == "tool":
        return ForcedTool(name=choice.name or "")
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _messages(wire: WireMessage) -> list[ChatMessage]:
    if isinstance(wire.content, str):
        return [ChatMessage(role=wire.role, content=wire.content)]
    out: list[ChatMessage] = []
    run: list[TextBlock | ImageBlock | ToolUseBlock] = []

    def close(cache: WireCacheControl | None) -> None:
        if run or cache is not None:
            out.append(_message(wire.role, run, _cache(cache)))
        run.clear()

    for block in wire.content:
        if isinstance(block, ToolResultBlock):
            close(None)
            out.append(
                ChatMessage(
                    role="tool",
                    content=block.text(),
                    tool_call_id=block.tool_use_id,
                    cache_control=_cache(block.cache_control),
                )
            )
            continue
        run.append(block)
        if block.cache_control is not None:
            close(block.cache_control)
    close(None)
    return out


def _message(
    role: str, blocks: list[TextBlock | ImageBlock | ToolUseBlock], cache: CacheControl | None
) -> ChatMessage:
    parts = [
        TextPart(text=b.text) if isinstance(b, TextBlock) else ImagePart(url=b.source.as_url())
        for b in blocks
        if isinstance(b, TextBlock | ImageBlock)
    ]
    calls = [
        ToolCall(id=b.id, name=b.name, arguments=json.dumps(b.input, separators=(",", ":")))
        for b in blocks
        if isinstance(b, ToolUseBlock)
    ]
    text = "\n".join(p.text for p in parts if isinstance(p, TextPart))
    images = any(isinstance(p, ImagePart) for p in parts)
    return ChatMessage(
        role="assistant" if role == "assistant" else "user",
        content=text,
        parts=parts if images else None,
        tool_calls=calls or None,
        cache_control=cache,
    )
