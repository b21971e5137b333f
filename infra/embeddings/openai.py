"""Embeddings from OpenAI or any OpenAI-compatible endpoint, through the official SDK.

Configured like the chat provider: OPENAI_API_KEY and OPENAI_BASE_URL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import openai

from infra.errors import PermanentError, TransientError

_RETRYABLE = {408, 409, 429}


class OpenAIEmbedder:
    def __init__(
        self,
        model: str = "text-embedding-3-small",
        dim: int = 1536,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.model = model
        self.dim = dim
        self._client = openai.AsyncOpenAI(
            # A local OpenAI-compatible server often needs no key; the SDK insists on one.
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-set",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,  # the consumer runner retries TransientError with backoff
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            response = await self._client.embeddings.create(
                model=self.model, input=list(texts), dimensions=self.dim
            )
        except openai.APIStatusError as exc:
            message = f"embeddings {self.model}: {exc.status_code} {exc.message}"
            if exc.status_code in _RETRYABLE or exc.status_code >= 500:
                raise TransientError(message) from exc
            raise PermanentError(message) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise TransientError(f"embeddings {self.model}: {exc}") from exc
        vectors = [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        if len(vectors) != len(texts) or any(len(v) != self.dim for v in vectors):
            raise PermanentError(f"embeddings {self.model}: expected {len(texts)}x{self.dim}")
        return vectors

    async def close(self) -> None:
        await self._client.close()
