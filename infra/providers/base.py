"""The provider port: stream one chat completion, reporting deltas as they come."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

OnDelta = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any]
    # Anthropic's `cache_control` ({"type": "ephemeral"[, "ttl"]}): a prompt-cache
    # breakpoint after this tool. Providers without explicit caching ignore it.
    cache_control: dict[str, str] | None = None


@dataclass(frozen=True)
class Image:
    url: str  # https, or a data:image/...;base64 URL
    detail: str | None = None  # OpenAI's "auto" | "low" | "high"


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str | None = None
    # With images: text (str) and images in their order; `content` is the text alone.
    parts: Sequence[str | Image] = ()
    # A prompt-cache breakpoint at the end of this message (as on Tool).
    cache_control: dict[str, str] | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: Sequence[Message]
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # Anthropic's; the other providers drop it
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # OpenAI's `response_format` as sent on the wire ("json_object", "json_schema").
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    stop: Sequence[str] = ()
    tools: Sequence[Tool] = ()
    # "auto" | "none" | "required" | the name of one tool to force; None: the vendor's default
    tool_choice: str | None = None
    forced_tool: str | None = None


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    usage_estimated: bool = False
    tool_calls: list[ToolCall] = field(default_factory=list)
    raw: dict[str, object] = field(default_factory=dict)
    # Of `input_tokens`, those the vendor read from its prompt cache (priced lower),
    # and those it wrote to it (Anthropic prices them higher).
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0


class ChatProvider(Protocol):
    name: str

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        """Run the request, awaiting `on_delta` for each piece of text.

        Raises TransientError (retry) or PermanentError (do not); nothing else.
        """
        ...

    async def close(self) -> None: ...
