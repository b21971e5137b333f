"""OpenAI and any OpenAI-compatible endpoint: chat completions over their wire protocol.

The chat path speaks HTTP + server-sent events itself, with aiohttp (the
shared part is in openai_http.py): the official SDK builds typed objects for
every request and chunk and costs several milliseconds of CPU per call, more
than the rest of a job. The wire format is OpenAI's published one; embeddings
(infra/embeddings/openai.py) and Azure's deployments (azure.py) use the same client.
A deployment with `api = "responses"` speaks the Responses API instead
(openai_responses.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from infra.errors import PermanentError, TransientError
from infra.providers import tokens
from infra.providers.base import (
    ChatRequest,
    Completion,
    Message,
    OnDelta,
    ToolCall,
)
from infra.providers.openai_http import OpenAIHttp, error_message


class OpenAIProvider(OpenAIHttp):
    """Configured like the SDK, by OPENAI_API_KEY and OPENAI_BASE_URL when not given."""

    path = "/chat/completions"

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        reading = _Reading()

        async def on_chunk(chunk: dict[str, Any]) -> None:
            if "error" in chunk:
                message = error_message(orjson.dumps(chunk))
                raise PermanentError(f"{self.name}: {message}", status=502)
            text = reading.add(chunk)
            if text:
                await on_delta(text)

        await self.stream_events(_params(request), on_chunk)
        if reading.finish_reason is None:
            # the connection ended before the answer did: never bill a partial answer as whole
            raise TransientError(
                f"{self.name}: the stream ended before its finish_reason", status=502
            )
        return reading.completion(request)


class _Reading:
    """The pieces of one streamed answer, put together."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> str:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        text = ""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.parts.append(content)
                text += content
            for call in delta.get("tool_calls") or ():
                # A call arrives in pieces: id and name first, then the arguments.
                slot = self.calls.setdefault(
                    call.get("index", 0), {"id": "", "name": "", "args": ""}
                )
                function = call.get("function") or {}
                if call.get("id"):
                    slot["id"] = call["id"]
                slot["name"] += function.get("name") or ""
                slot["args"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return text

    def completion(self, request: ChatRequest) -> Completion:
        text = "".join(self.parts)
        tool_calls = [
            ToolCall(c["id"], c["name"], c["args"] or "{}") for _, c in sorted(self.calls.items())
        ]
        if self.usage is not None:
            details = self.usage.get("prompt_tokens_details") or {}
            return Completion(
                text,
                self.finish_reason,
                int(self.usage.get("prompt_tokens") or 0),
                int(self.usage.get("completion_tokens") or 0),
                tool_calls=tool_calls,
                cached_input_tokens=int(details.get("cached_tokens") or 0),
            )
        answer = Message("assistant", text, tool_calls)
        return Completion(
            text,
            self.finish_reason,
            tokens.count_request(request),
            tokens.count_text(text) + tokens.count_tool_calls(answer),
            usage_estimated=True,
            tool_calls=tool_calls,
        )


def _message_param(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": _content(m)}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _content(m: Message) -> str | list[dict[str, Any]]:
    if not m.parts:
        return m.content
    return [
        {"type": "text", "text": p}
        if isinstance(p, str)
        else {
            "type": "image_url",
            "image_url": {"url": p.url, **({"detail": p.detail} if p.detail else {})},
        }
        for p in m.parts
    ]


def _params(request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [_message_param(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            params[name] = value
    if request.response_format:
        params["response_format"] = request.response_format
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.stop:
        params["stop"] = list(request.stop)
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                    **({"description": t.description} if t.description else {}),
                },
            }
            for t in request.tools
        ]
    if request.forced_tool:
        params["tool_choice"] = {"type": "function", "function": {"name": request.forced_tool}}
    elif request.tool_choice:
        params["tool_choice"] = request.tool_choice
    return params
