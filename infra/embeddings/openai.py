"""Embeddings from OpenAI or any OpenAI-compatible endpoint, over the raw HTTP client.

Two users: the memory worker through the Embedder port (`embed`, vectors of the
configured size) and the gateway (`embed_counted`, which also returns the input
tokens the vendor counted, for billing). Configured like the chat provider:
OPENAI_API_KEY and OPENAI_BASE_URL, or a `Wire` (Azure's deployments). The
calls go through the chat path's client (infra/providers/openai_http.py): the
official SDK cost about 4 ms of CPU per call for typed objects nobody reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.embeddings.base import embed_in_requests
from infra.errors import PermanentError
from infra.providers.openai_http import OpenAIHttp, Wire

MAX_INPUTS = 512  # texts per request


class EmbeddingsHttp(OpenAIHttp):
    path = "/embeddings"


class OpenAIEmbedder:
    def __init__(
        self,
        model: str = "text-embedding-3-small",
        dim: int = 1536,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        wire: Wire | None = None,
        name: str = "openai",
        http: OpenAIHttp | None = None,
    ) -> None:
        self.model = model
        self.dim = dim
        self._http = http or EmbeddingsHttp(
            name=name, api_key=api_key, base_url=base_url, timeout_s=timeout_s, wire=wire
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The Embedder port: one vector of `dim` numbers per text."""
        return await embed_in_requests(self, texts, MAX_INPUTS)

    async def embed_counted(
        self, texts: Sequence[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """The vectors and the input tokens the vendor counted."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": list(texts),
            "encoding_format": "float",
        }
        if dimensions:
            body["dimensions"] = dimensions
        answer = await self._http.post_json(body)
        try:
            ordered = sorted(answer["data"], key=lambda d: d["index"])
            # orjson reads the numbers as floats already: no per-number conversion.
            vectors: list[list[float]] = [d["embedding"] for d in ordered]
            if not all(isinstance(v, list) for v in vectors):
                raise TypeError("an embedding is not a list of numbers")
            used = int((answer.get("usage") or {}).get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(
                f"{self._http.name} embeddings: unexpected answer ({exc!r})", status=502
            ) from exc
        if len(vectors) != len(texts):
            raise PermanentError(
                f"{self._http.name} embeddings: {len(vectors)} vectors for {len(texts)} texts",
                status=502,
            )
        return vectors, used

    async def close(self) -> None:
        await self._http.close()
