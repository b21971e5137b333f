"""Embeddings from Gemini (`text-embedding-004`, `gemini-embedding-*`) through `google-genai`.

The same two users as the OpenAI embedder: the Embedder port (`embed`) and the
gateway (`embed_counted`, with the input tokens for billing). One
`embed_content` call embeds a batch (the Developer API's
`batchEmbedContents`). The vendor reports tokens on Vertex (per text) and in
newer Developer API answers; where it does not, they are counted with our
tokenizer. Configured like the chat provider (infra/providers/gemini.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from google.genai import types

from infra.embeddings.base import embed_in_requests
from infra.errors import PermanentError
from infra.providers import tokens
from infra.providers.gemini import VENDOR, gemini_errors, make_client

MAX_INPUTS = 100  # texts per request: the Developer API's batch limit


class GeminiEmbedder:
    def __init__(
        self,
        model: str = "gemini-embedding-001",
        dim: int = 768,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        project: str | None = None,
        location: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.dim = dim
        self._client, self._transport = make_client(
            api_key=api_key,
            base_url=base_url,
            project=project,
            location=location,
            timeout_s=timeout_s,
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The Embedder port: one vector of `dim` numbers per text."""
        return await embed_in_requests(self, texts, MAX_INPUTS)

    async def embed_counted(
        self, texts: Sequence[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """The vectors, in the order of `texts`, and the input tokens."""
        config = types.EmbedContentConfig(output_dimensionality=dimensions or None)
        with gemini_errors(f"{VENDOR} embeddings"):
            reply = await self._client.aio.models.embed_content(
                model=self.model, contents=list(texts), config=config
            )
        embeddings = reply.embeddings or []
        if len(embeddings) != len(texts):
            raise PermanentError(
                f"{VENDOR} embeddings: {len(embeddings)} vectors for {len(texts)} texts",
                status=502,
            )
        vectors = [list(e.values or ()) for e in embeddings]
        counted = [e.statistics.token_count for e in embeddings if e.statistics]
        if reply.usage_metadata is not None and reply.usage_metadata.prompt_token_count:
            used = reply.usage_metadata.prompt_token_count
        elif counted and len(counted) == len(texts):
            used = int(sum(c or 0 for c in counted))
        else:
            used = tokens.estimate_texts(texts)
        return vectors, used

    async def close(self) -> None:
        await self._client.aio.aclose()
        await self._transport.aclose()
