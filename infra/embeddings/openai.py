"""OpenAI's embeddings API (and OpenAI-compatible servers), through the official SDK."""

from __future__ import annotations

import os
from collections.abc import Sequence

import openai

from infra.errors import PermanentError, TransientError
from infra.providers.http_errors import from_status


class OpenAIEmbedder:
    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dim: int = 1536,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.dim = dim
        self._client = openai.AsyncOpenAI(
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-set",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors, _ = await self.embed_counted(texts)
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
