"""The embedder port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from infra.errors import PermanentError


class Embedder(Protocol):
    model: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text. Raises TransientError or PermanentError."""
        ...


class CountedEmbedder(Protocol):
    """A vendor's embedder: the vectors of one request, and the tokens it counted."""

    model: str
    dim: int

    async def embed_counted(
        self, texts: Sequence[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]: ...


async def embed_in_requests(
    embedder: CountedEmbedder, texts: Sequence[str], max_inputs: int
) -> list[list[float]]:
    """The Embedder port over a vendor's: a memory list can hold more texts than a request
    takes, so requests of `max_inputs`, one after the other; `dim` numbers per text."""
    vectors: list[list[float]] = []
    for start in range(0, len(texts), max_inputs):
        part, _ = await embedder.embed_counted(texts[start : start + max_inputs], embedder.dim)
        vectors += part
    if len(vectors) != len(texts) or any(len(v) != embedder.dim for v in vectors):
        raise PermanentError(f"embeddings {embedder.model}: expected {len(texts)}x{embedder.dim}")
    return vectors
