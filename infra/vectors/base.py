"""The vector store port: chunks of memories in, nearest chunks out.

Every call names the tenant and the user. Implementations must apply both on
every read and delete, whatever else a caller's filter says: that is the
isolation guarantee of the memory API.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Chunk:
    memory_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: str
    chunk: int
    text: str
    model: str
    # As the stores keep it: float32 (an `array("f")` on the hot path, or a list).
    vector: Sequence[float]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        # Deterministic: re-storing a memory overwrites its chunks instead of adding more.
        return f"{self.memory_id}#{self.chunk}"


@dataclass(frozen=True)
class Query:
    """The `top_k` chunks of one user, embedded by `model`, nearest to `vector` first;
    `filter` narrows them by metadata (it never widens them past the tenant and user)."""

    tenant_id: uuid.UUID
    user_id: str
    vector: Sequence[float]
    model: str
    top_k: int
    filter: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    memory_id: uuid.UUID
    chunk: int
    text: str
    score: float  # cosine similarity, higher is closer
    metadata: dict[str, str]


class VectorStore(Protocol):
    name: str

    async def upsert(self, chunks: Sequence[Chunk]) -> None:
        """Insert or overwrite chunks by id. Raises TransientError or PermanentError."""
        ...

    async def search(self, query: Query) -> list[Hit]:
        """The nearest chunks of this user embedded by `model`, closest first."""
        ...

    async def delete(
        self, tenant_id: uuid.UUID, user_id: str, memory_ids: Sequence[uuid.UUID]
    ) -> None:
        """Delete every chunk of these memories of this user; unknown ids are ignored."""
        ...

    async def memory_ids(self, tenant_id: uuid.UUID, user_id: str) -> set[uuid.UUID]:
        """Ids of the memories of this user that have chunks stored."""
        ...

    async def close(self) -> None: ...
