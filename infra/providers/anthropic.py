"""Anthropic's Messages API, through the official async SDK."""

from __future__ import annotations

import os
from typing import Any

import anthropic

from infra.errors import PermanentError, TransientError
from infra.providers.base import ChatRequest, Completion, OnDelta
from infra.providers.http_errors import from_status

DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider:
    """Configured by the SDK's own variables (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)."""

    def __init__(
        self, *, api_key: str | None = None, base_url: str | None = None, timeout_s: float = 600.0
    ) -> None:
        self.name = "anthropic"
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or os.environ.get("ANTHROPIC_API_KEY") or "not-set",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
        )

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        # Anthropic takes the system prompt apart from the turns.
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        turns = [
            {"role": m.role, "content": m.content}
            for m in request.messages
            if m.role in ("user", "assistant")
        ]
        params: dict[str, Any] = {
            "model": request.model,
            "messages": turns,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if system:
            params["system"] = system
        if request.temperature is not None:
            params["temperature"] = min(request.temperature, 1.0)
        parts: list[str] = []
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        try:
            stream = await self._client.messages.create(**params)
            async for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens
                    output_tokens = event.message.usage.output_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    parts.append(event.delta.text)
                    await on_delta(event.delta.text)
                elif event.type == "message_delta":
                    output_tokens = event.usage.output_tokens
                    stop_reason = event.delta.stop_reason
        except anthropic.APIStatusError as exc:
            raise from_status(
                self.name, exc.status_code, _message(exc), exc.response.headers
            ) from exc
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as exc:
            raise TransientError(f"anthropic: {type(exc).__name__}: {exc}") from exc
        except anthropic.AnthropicError as exc:
            raise PermanentError(f"anthropic: {exc}") from exc
        return Completion("".join(parts), stop_reason, input_tokens, output_tokens)

    async def close(self) -> None:
        await self._client.close()


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return str(exc.message)
