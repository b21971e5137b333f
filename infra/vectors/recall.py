"""Recalling a user's memories for a chat: the small port model calls depend on."""

from __future__ import annotations

import uuid
from typing import Protocol

from infra.vectors.base import Query
from infra.vectors.factory import MemoryBackend


class MemoryRecall(Protocol):
    @property
    def model(self) -> str:
        """The embedding model that embeds the query (what a recall is billed as)."""
        ...

    async def recall(self, tenant_id: uuid.UUID, user_id: str, query: str, top_k: int) -> list[str]:
        """Texts of the user's memories nearest to `query`, closest first."""
        ...


class StoreRecall:
    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend

    @property
    def model(self) -> str:
        return self._backend.embedder.model

    async def recall(self, tenant_id: uuid.UUID, user_id: str, query: str, top_k: int) -> list[str]:
        embedder = self._backend.embedder
        [vector] = await embedder.embed([query])
        hits = await self._backend.store.search(
            Query(tenant_id, user_id, vector, model=embedder.model, top_k=top_k)
        )
        return [hit.text for hit in hits]
