"""OpenAI and any OpenAI-compatible endpoint, through the official async SDK."""

from __future__ import annotations

from typing import Any

import openai

from infra.errors import PermanentError, TransientError
from infra.providers.base import ChatRequest, Completion, OnDelta, estimate_tokens
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
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Any = None
        try:
            stream = await self._client.chat.completions.create(**params)
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        parts.append(choice.delta.content)
                        await on_delta(choice.delta.content)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except openai.APIStatusError as exc:
            raise from_status(
                self.name, exc.status_code, _message(exc), exc.response.headers
            ) from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        except openai.OpenAIError as exc:
            raise PermanentError(f"{self.name}: {exc}") from exc
        text = "".join(parts)
        if usage is not None:
            return Completion(text, finish_reason, usage.prompt_tokens, usage.completion_tokens)
        prompt = " ".join(m.content for m in request.messages)
        return Completion(
            text,
            finish_reason,
            estimate_tokens(prompt),
            estimate_tokens(text),
            usage_estimated=True,
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
