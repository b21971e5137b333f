"""OpenAI and any OpenAI-compatible endpoint, through the official async SDK."""

from __future__ import annotations

from typing import Any

import openai

from infra.errors import PermanentError, TransientError
from infra.providers.base import (
    ChatRequest,
    Completion,
    Message,
    OnDelta,
    ToolCall,
    estimate_tokens,
)
from infra.providers.http_errors import from_status


class OpenAIProvider:
    """Configured by the SDK's own variables (OPENAI_API_KEY, OPENAI_BASE_URL)."""

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.name = name
        self._client = openai.AsyncOpenAI(
            # The SDK refuses to start without a key; a local OpenAI-compatible
            # server often needs none, so a placeholder keeps it usable.
            api_key=api_key or _env_key() or "not-set",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,  # retries are ours: one policy, visible in the job's stream
        )

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        params = _params(request)
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        usage: Any = None
        try:
            stream = await self._client.chat.completions.create(**params)
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta and delta.content:
                        parts.append(delta.content)
                        await on_delta(delta.content)
                    for call in (delta.tool_calls if delta else None) or ():
                        # A call arrives in pieces: id and name first, then the arguments.
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "args": ""})
                        if call.id:
                            slot["id"] = call.id
                        if call.function and call.function.name:
                            slot["name"] += call.function.name
                        if call.function and call.function.arguments:
                            slot["args"] += call.function.arguments
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except openai.APIStatusError as exc:
            raise from_status(
                self.name, exc.status_code, _message(exc), exc.response.headers
            ) from exc
        except openai.APITimeoutError as exc:
            raise TransientError(f"{self.name}: timed out", status=504) from exc
        except openai.APIConnectionError as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc
        except openai.OpenAIError as exc:
            raise PermanentError(f"{self.name}: {exc}", status=502) from exc
        text = "".join(parts)
        tool_calls = [
            ToolCall(c["id"], c["name"], c["args"] or "{}") for _, c in sorted(calls.items())
        ]
        if usage is not None:
            return Completion(
                text, finish_reason, usage.prompt_tokens, usage.completion_tokens,
                tool_calls=tool_calls,
            )  # fmt: skip
        prompt = " ".join(m.content for m in request.messages)
        return Completion(
            text,
            finish_reason,
            estimate_tokens(prompt),
            estimate_tokens(text),
            usage_estimated=True,
            tool_calls=tool_calls,
        )

    async def close(self) -> None:
        await self._client.close()


def _env_key() -> str | None:
    import os

    return os.environ.get("OPENAI_API_KEY")


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return str(exc.message)


def _message_param(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _params(request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [_message_param(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.stop:
        params["stop"] = list(request.stop)
    if request.tools:
        params["tools"] = [
            {"type": "function", "function": {
                "name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}},
                **({"description": t.description} if t.description else {}),
            }}
            for t in request.tools
        ]  # fmt: skip
    if request.forced_tool:
        params["tool_choice"] = {"type": "function", "function": {"name": request.forced_tool}}
    elif request.tool_choice:
        params["tool_choice"] = request.tool_choice
    return params
