"""Embeddings from OpenAI or any OpenAI-compatible endpoint, through the official SDK.

Two users: the memory worker through the Embedder port (`embed`, vectors of the
configured size) and the gateway (`embed_counted`, which also returns the input
tokens the vendor counted, for billing). Configured like the chat provider:
OPENAI_API_KEY and OPENAI_BASE_URL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import openai

from infra.errors import PermanentError, TransientError
from infra.providers.http_errors import from_status

MAX_INPUTS = 512  # texts per request


class OpenAIEmbedder:
    def __init__(
        self,
        model: str = "text-embedding-3-small",
        dim: int = 1536,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.dim = dim
        self._client = openai.AsyncOpenAI(
            # A local OpenAI-compatible server often needs no key; the SDK insists on one.
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-set",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,  # callers retry TransientError with their own backoff
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The Embedder port: one vector of `dim` numbers per text."""
        vectors: list[list[float]] = []
        # A memory list can hold more chunks than a request takes (2,048 inputs, 300k
        # tokens): requests of `MAX_INPUTS`, one after the other.
        for start in range(0, len(texts), MAX_INPUTS):
            part, _ = await self.embed_counted(texts[start : start + MAX_INPUTS], self.dim)
            vectors += part
        if len(vectors) != len(texts) or any(len(v) != self.dim for v in vectors):
            raise PermanentError(f"embeddings {self.model}: expected {len(texts)}x{self.dim}")
        return vectors

    async def embed_counted(
        self, texts: Sequence[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """The vectors and the input tokens the vendor counted."""
        try:
            reply = await self._client.embeddings.create(
                model=self.model,
                input=list(texts),
                encoding_format="float",
                dimensions=dimensions or openai.omit,
            )
        except openai.APIStatusError as exc:
            raise from_status(
                "openai", exc.status_code, str(exc.message), exc.response.headers
            ) from exc
        except openai.APITimeoutError as exc:
            raise TransientError("openai embeddings: timed out", status=504) from exc
        except openai.APIConnectionError as exc:
            raise TransientError(f"openai embeddings: {exc}", status=502) from exc
        except openai.OpenAIError as exc:
            raise PermanentError(f"openai embeddings: {exc}", status=502) from exc
        ordered = sorted(reply.data, key=lambda d: d.index)
        return [list(d.embedding) for d in ordered], reply.usage.prompt_tokens

    async def close(self) -> None:
        await self._client.close()
