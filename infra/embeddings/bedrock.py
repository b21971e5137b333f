"""Embeddings on AWS Bedrock (InvokeModel with the model's own JSON body).

Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, v1 too) take one
text a call, so a list is sent as concurrent calls (at most `CONCURRENCY` at
once); Titan counts the input tokens it bills. Cohere Embed
(`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`) takes up to 96
texts a call and counts nothing: its tokens are estimated. The client,
region, endpoint and credentials are the chat provider's
(infra/providers/bedrock.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from infra.errors import PermanentError
from infra.providers import tokens
from infra.providers.bedrock import BedrockRuntime

CONCURRENCY = 8  # Titan calls in flight for one list
COHERE_MAX_TEXTS = 96
# Titan v2 answers 1024 numbers unless asked for 256 or 512; v1 always 1536.
TITAN_V2_SIZES = (256, 512, 1024)


def default_dim(model: str) -> int:
    if "titan-embed-text-v1" in model or "titan-embed-g1" in model:
        return 1536
    return 1024


class BedrockEmbedder:
    def __init__(
        self,
        model: str = "amazon.titan-embed-text-v2:0",
        dim: int | None = None,
        *,
        region: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not ("titan-embed" in model or "cohere.embed" in model):
            raise PermanentError(
                f"bedrock embeddings: {model!r} is neither Titan nor Cohere Embed", status=400
            )
        self.model = model
        self.dim = dim or default_dim(model)
        self.runtime = BedrockRuntime(
            name="bedrock embeddings", region=region, base_url=base_url, timeout_s=timeout_s
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The Embedder port: one vector of `dim` numbers per text."""
        vectors, _ = await self.embed_counted(texts, self.dim)
        if any(len(v) != self.dim for v in vectors):
            raise PermanentError(f"embeddings {self.model}: expected {len(texts)}x{self.dim}")
        return vectors

    async def embed_counted(
        self, texts: Sequence[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """The vectors and the input tokens (Titan's count; estimated for Cohere)."""
        if "cohere.embed" in self.model:
            return await self._cohere(texts), tokens.estimate_texts(texts)
        v2 = "text-v2" in self.model
        if v2 and dimensions is not None and dimensions not in TITAN_V2_SIZES:
            raise PermanentError(
                f"{self.model} makes vectors of {TITAN_V2_SIZES} numbers, not {dimensions}",
                status=400,
            )
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(text: str) -> dict[str, Any]:
            body: dict[str, Any] = {"inputText": text}
            if "text-v2" in self.model:
                body["dimensions"] = dimensions or (
                    self.dim if self.dim in TITAN_V2_SIZES else 1024
                )
            async with slots:
                return await self.runtime.invoke_json(self.model, body)

        answers = await asyncio.gather(*(one(t) for t in texts))
        vectors = [_floats(a.get("embedding"), self.model) for a in answers]
        return vectors, sum(int(a.get("inputTextTokenCount") or 0) for a in answers)

    async def _cohere(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), COHERE_MAX_TEXTS):
            part = list(texts[start : start + COHERE_MAX_TEXTS])
            answer = await self.runtime.invoke_json(
                self.model, {"texts": part, "input_type": "search_document"}
            )
            found = answer.get("embeddings")
            if isinstance(found, dict):  # asked with embedding_types: {"float": [...]}
                found = found.get("float")
            if not isinstance(found, list) or len(found) != len(part):
                raise PermanentError(f"{self.model}: expected {len(part)} embeddings", status=502)
            vectors += [_floats(v, self.model) for v in found]
        return vectors

    async def close(self) -> None:
        await self.runtime.close()


def _floats(value: Any, model: str) -> list[float]:
    if not isinstance(value, list):
        raise PermanentError(f"{model}: an answer without an embedding", status=502)
    return [float(x) for x in value]
