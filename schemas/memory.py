"""Payloads of the memory events and the memory HTTP models.

Every write goes through the `memory.commands` topic, deletes included, so
replaying the topic into an empty store rebuilds the same set of memories.
"""

from __future__ import annotations

import array
import base64
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.request import RequestModel

_BIG_ENDIAN = sys.byteorder == "big"

MEMORY_REMEMBER = "memory.remember"
MEMORY_FORGET = "memory.forget"
MEMORY_FORGET_USER = "memory.forget_user"
MEMORY_STORED = "memory.stored"
MEMORY_EMBED_FAILED = "memory.embed_failed"
# Chunks per memory.stored event: 32 chunks of 1536 dimensions stay far below
# Kafka's default 1 MB message limit, whatever the memory's length.
STORED_CHUNKS_PER_EVENT = 32

MemoryStatus = Literal["pending", "stored", "failed", "deleted"]

UserId = Field(min_length=1, max_length=200)
# In a request body: a signed-in user may leave it out (it is then theirs); a key names one.
OptionalUserId = Field(default=None, min_length=1, max_length=200)


def user_key(tenant_id: uuid.UUID, user_id: str) -> uuid.UUID:
    """The Kafka key of a user's memory events: one user's events stay in order."""
    return uuid.uuid5(tenant_id, f"memory-user:{user_id}")


def derived_memory_id(parent: uuid.UUID, purpose: str) -> uuid.UUID:
    """A deterministic memory id that keeps the time order of `parent` (a UUIDv7).

    A user wipe forgets memories with ids below a cut-off, so a memory made
    from an event must sort where that event does; the low bits come from a
    hash, so re-publishing yields the same id.
    """
    hashed = uuid.uuid5(parent, purpose).int
    value = (parent.int >> 80) << 80 | (hashed & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0b11 << 62)) | (0b10 << 62)  # RFC 9562 variant
    return uuid.UUID(int=value)


class Remember(BaseModel):
    """Store `text` as a memory of `user_id` (chunked and embedded by the memory group)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_id: uuid.UUID
    user_id: str = UserId
    text: str = Field(min_length=1, max_length=200_000)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    # reembed: the memory exists; replace its chunks with the current model's.
    source: Literal["api", "chat", "reembed"] = "api"
    # The API key the embedding is billed to (None: the tenant alone, as a re-embed).
    api_key_id: uuid.UUID | None = None


class Forget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_id: uuid.UUID
    user_id: str = UserId


class ForgetUser(BaseModel):
    """Forget every memory of a user remembered before this event (ids are time-ordered)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = UserId
    before: uuid.UUID


class MemoryContext(RequestModel):
    """On a chat job: inject the user's most relevant memories before the model call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = UserId
    top_k: int = Field(default=5, ge=1, le=50)
    remember: bool = False


def pack_vector(vector: Sequence[float]) -> str:
    """Base64 of little-endian float32: what the vector stores keep, a quarter of JSON."""
    return base64.b64encode(_little_endian(vector).tobytes()).decode()


def _little_endian(vector: Sequence[float]) -> array.array[float]:
    """The vector's float32 values (rounded to nearest) laid out little-endian."""
    if isinstance(vector, array.array) and vector.typecode == "f" and not _BIG_ENDIAN:
        return vector
    out = array.array("f", vector)
    if _BIG_ENDIAN:
        out.byteswap()
    return out


def unpack_vector(packed: str) -> list[float]:
    out = array.array("f", base64.b64decode(packed))
    if _BIG_ENDIAN:
        out.byteswap()
    return out.tolist()


def as_float32(vector: Sequence[float]) -> list[float]:
    """The vector as the stores keep it, so a stored event and the live store agree bit for bit."""
    return unpack_vector(pack_vector(vector))


class Stored(BaseModel):
    """Chunks of a remembered memory and their vectors, as the memory group stored them.

    Published by the memory group before it marks the memory stored, one event
    per `STORED_CHUNKS_PER_EVENT` chunks. A replay rebuilds the store from
    these without embedding again: no embedding API is called twice, and the
    vectors are the ones the live store holds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_id: uuid.UUID
    user_id: str = UserId
    model: str
    dim: int
    chunks: int = Field(ge=0, description="chunks of the whole memory, over all parts")
    first_chunk: int = Field(ge=0, description="index of this part's first chunk")
    texts: list[str]
    vectors: list[str] = Field(description="base64 of little-endian float32, one per text")
    # a re-embed: the memory's older chunks are dropped before these are stored
    replace: bool = False


class EmbedFailed(BaseModel):
    """The embedder refused a memory's text for good: the memory is marked failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_id: uuid.UUID
    user_id: str = UserId
    error: str


# HTTP ----------------------------------------------------------------------


class MemoryCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str | None = OptionalUserId
    text: str = Field(min_length=1, max_length=200_000)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)


class MemoryAccepted(BaseModel):
    id: uuid.UUID
    status: MemoryStatus
    url: str


class MemoryView(BaseModel):
    id: uuid.UUID
    user_id: str
    text: str
    metadata: dict[str, str]
    status: MemoryStatus
    error: str | None
    chunks: int
    embedding_model: str | None
    embedding_dim: int | None
    created_at: datetime
    stored_at: datetime | None


class MemoryList(BaseModel):
    data: list[MemoryView]


class MemorySearch(RequestModel):
    """`filter` narrows by metadata equality; tenant and user always apply on top of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str | None = OptionalUserId
    query: str = Field(min_length=1, max_length=20_000)
    top_k: int = Field(default=5, ge=1, le=100)
    filter: dict[str, str] = Field(default_factory=dict, max_length=16)


class MemoryHit(BaseModel):
    memory_id: uuid.UUID
    chunk: int
    text: str
    score: float
    metadata: dict[str, Any]


class MemorySearchResult(BaseModel):
    data: list[MemoryHit]
    took_ms: float
