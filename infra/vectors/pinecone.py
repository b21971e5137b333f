"""The Pinecone store: one index, one namespace per tenant, the user in the metadata.

Every query and delete carries `user_id` (and the embedding model) in its
filter next to the caller's; the caller's metadata keys are prefixed so they
can never name ours.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from pinecone import AsyncPinecone
from pinecone.errors import ApiError, PineconeError, PineconeTimeoutError

from infra.errors import PermanentError, TransientError
from infra.vectors.base import Chunk, Hit, Query

_META = "m."  # prefix of caller metadata keys
_RETRYABLE = {408, 429, 500, 502, 503, 504}
_UPSERT_BATCH = 100  # vectors per request (Pinecone takes 2 MB, 1,000 vectors at most)


class PineconeStore:
    name = "pinecone"

    def __init__(self, *, host: str, api_key: str, timeout_s: float = 10.0) -> None:
        # Index handles keep the SDK's short retries (429/5xx, up to 3); what still
        # fails surfaces as TransientError for the consumer runner's own backoff.
        self._client = AsyncPinecone(api_key=api_key, timeout=timeout_s)
        self._host = host
        self._index: Any = None
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        async with self._opening:  # concurrent first calls share one index client
            if self._index is None:
                self._index = await self._client.index(host=self._host)
        return self._index

    async def upsert(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        by_tenant: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for c in chunks:
            metadata: dict[str, Any] = {f"{_META}{k}": v for k, v in c.metadata.items()}
            metadata.update(
                user_id=c.user_id,
                memory_id=str(c.memory_id),
                chunk=c.chunk,
                text=c.text,
                model=c.model,
            )
            by_tenant.setdefault(c.tenant_id, []).append(
                {"id": c.id, "values": list(c.vector), "metadata": metadata}
            )
        index = await self._open()
        for tenant_id, vectors in by_tenant.items():
            # A memory list's chunks in requests under the index's caps, each one's errors
            # raised and translated (the SDK's own batching reports them instead).
            for start in range(0, len(vectors), _UPSERT_BATCH):
                with _translated("upsert"):
                    response = await index.upsert(
                        vectors=vectors[start : start + _UPSERT_BATCH],
                        namespace=str(tenant_id),
                        show_progress=False,
                    )
                if response.failed_item_count:
                    raise TransientError(f"pinecone upsert: {response.errors}")

    async def search(self, query: Query) -> list[Hit]:
        conditions: list[dict[str, Any]] = [
            {"user_id": {"$eq": query.user_id}},
            {"model": {"$eq": query.model}},
            *({f"{_META}{k}": {"$eq": v}} for k, v in query.filter.items()),
        ]
        index = await self._open()
        with _translated("query"):
            response = await index.query(
                vector=list(query.vector),
                top_k=query.top_k,
                namespace=str(query.tenant_id),
                filter={"$and": conditions},
                include_metadata=True,
            )
        hits = []
        for match in response.matches:
            meta = dict(match.metadata or {})
            if meta.get("user_id") != query.user_id:
                continue  # never trust a remote filter with isolation
            hits.append(
                Hit(
                    memory_id=uuid.UUID(str(meta["memory_id"])),
                    chunk=int(meta["chunk"]),
                    text=str(meta.get("text", "")),
                    score=float(match.score),
                    metadata={
                        k.removeprefix(_META): str(v)
                        for k, v in meta.items()
                        if k.startswith(_META)
                    },
                )
            )
        return hits

    async def delete(
        self, tenant_id: uuid.UUID, user_id: str, memory_ids: Sequence[uuid.UUID]
    ) -> None:
        if not memory_ids:
            return
        index = await self._open()
        with _translated("delete"):
            await index.delete(
                namespace=str(tenant_id),
                filter={
                    "$and": [
                        {"user_id": {"$eq": user_id}},
                        {"memory_id": {"$in": [str(m) for m in memory_ids]}},
                    ]
                },
            )

    async def memory_ids(self, tenant_id: uuid.UUID, user_id: str) -> set[uuid.UUID]:
        # Listing ids gives no metadata; fetch them to keep only this user's.
        index = await self._open()
        found: set[uuid.UUID] = set()
        with _translated("list"):
            async for page in index.list(namespace=str(tenant_id)):
                ids = [item.id for item in page.vectors]
                fetched = await index.fetch(ids=ids, namespace=str(tenant_id))
                for vec in fetched.vectors.values():
                    meta = vec.metadata or {}
                    if meta.get("user_id") == user_id:
                        found.add(uuid.UUID(str(meta["memory_id"])))
        return found

    async def close(self) -> None:
        if self._index is not None:
            await self._index.close()
        await self._client.close()


class _translated:
    """Vendor errors become ours at the edge."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: Any, exc: BaseException | None, _tb: Any) -> None:
        if exc is None:
            return
        if isinstance(exc, ApiError):
            message = f"pinecone {self._what}: {exc}"
            if exc.status_code in _RETRYABLE:
                raise TransientError(message) from exc
            raise PermanentError(message) from exc
        if isinstance(exc, PineconeTimeoutError | ConnectionError | TimeoutError):
            raise TransientError(f"pinecone {self._what}: {exc}") from exc
        if isinstance(exc, PineconeError):
            name = type(exc).__name__
            if "Connection" in name:
                raise TransientError(f"pinecone {self._what}: {exc}") from exc
            raise PermanentError(f"pinecone {self._what}: {exc}") from exc
