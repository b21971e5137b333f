"""The `local` provider: development models that need no network and no key.

`local-echo` answers with the last user message, word by word, so the whole
path (Kafka, worker, deltas, result, usage) can be tried offline. It is a
development aid, not a model.
"""

from __future__ import annotations

import asyncio

from infra.errors import PermanentError
from infra.providers import tokens
from infra.providers.base import ChatRequest, Completion, OnDelta

MODELS = ("local-echo",)


class LocalProvider:
    def __init__(self, delay_s: float = 0.02) -> None:
        self.name = "local"
        self._delay_s = delay_s

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        if request.model not in MODELS:
            raise PermanentError(f"unknown local model {request.model!r}; try one of {MODELS}")
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        words = last_user.split(" ") if last_user else []
        if request.max_tokens is not None:
            words = words[: request.max_tokens]
        for index, word in enumerate(words):
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            await on_delta(word if index == 0 else " " + word)
        text = " ".join(words)
        finish = (
            "length"
            if request.max_tokens is not None and len(words) == request.max_tokens
            else "stop"
        )
        return Completion(text, finish, tokens.count_request(request), len(words))

    async def close(self) -> None:
        return None
