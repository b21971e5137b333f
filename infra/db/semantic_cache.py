"""The semantic cache's rows: earlier answers found by the meaning of a question.

Beside the response cache (exact bytes, in Redis), this one lives in Postgres
with pgvector: a row per answered request that asked for it, keyed by its
tenant and partition key (what must match exactly) and holding the embedding
of the question. A lookup takes the nearest live row of the same partition,
embedding model and dimension; the caller decides whether it is near enough.

The untyped `embedding` column and its per-dimension partial HNSW indexes are
`memory_chunks`' (migration 0970). pgvector 0.6 filters an HNSW scan after the
fact, so a partition that holds a small share of the table may find nothing
(or not its nearest) through the index: then an exact scan of the partition,
which the per-tenant bound keeps small, decides.

Rows past `expires_at` are never served; a write deletes the tenant's expired
rows and, past `max_entries`, its oldest. A failing database is a miss (the
call goes to the model), never a failed job: this is a cache.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from infra.db.engine import Database
from infra.vectors.pgvector import vector_literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """What a request's answer is stored under."""

    tenant_id: uuid.UUID
    partition_key: str
    model: str  # the embedding model
    vector: Sequence[float]
    user_id: str | None = None  # whose job wrote it: forgetting that user deletes it


@dataclass(frozen=True)
class Found:
    answer: dict[str, Any]
    similarity: float  # cosine similarity, 1.0 for the same direction


_WHERE = (
    "tenant_id = :tenant_id AND partition_key = :partition_key AND model = :model "
    "AND dim = {dim} AND expires_at > now()"
)

_INSERT = """
    INSERT INTO semantic_cache
        (id, tenant_id, partition_key, user_id, model, dim, embedding, answer, tokens_saved,
         created_at, expires_at)
    VALUES (:id, :tenant_id, :partition_key, :user_id, :model, :dim,
            CAST(CAST(:embedding AS text) AS vector), CAST(:answer AS jsonb), :tokens_saved,
            clock_timestamp(), clock_timestamp() + make_interval(secs => :ttl_s))
"""

# The tenant's expired rows, then the oldest beyond the bound.
_TRIM = """
    DELETE FROM semantic_cache WHERE id IN (
        SELECT id FROM semantic_cache WHERE tenant_id = :tenant_id AND expires_at <= now()
        UNION ALL
        (SELECT id FROM semantic_cache WHERE tenant_id = :tenant_id
         ORDER BY created_at DESC, id DESC OFFSET :max_entries)
    )
"""


class SemanticCacheStore:
    def __init__(self, db: Database, ef_search: int = 100) -> None:
        self._db = db
        self._ef_search = int(ef_search)

    async def nearest(self, entry: Entry, threshold: float) -> Found | None:
        """The nearest live answer of the entry's partition if its similarity is at least
        `threshold`; None otherwise (or when the database is away)."""
        dim = len(entry.vector)
        params = {
            "tenant_id": entry.tenant_id,
            "partition_key": entry.partition_key,
            "model": entry.model,
            "q": vector_literal(entry.vector),
        }
        where = _WHERE.format(dim=dim)
        distance = f"(embedding::vector({dim}) <=> CAST(CAST(:q AS text) AS vector({dim})))"
        approximate = (
            f"SELECT answer, {distance} AS distance FROM semantic_cache "
            f"WHERE {where} ORDER BY {distance} LIMIT 1"
        )
        exact = (
            f"WITH own AS MATERIALIZED (SELECT answer, embedding FROM semantic_cache "
            f"WHERE {where}) SELECT answer, {distance} AS distance FROM own "
            "ORDER BY distance LIMIT 1"
        )
        try:
            found = await self._first(approximate, params)
            if found is None or found.similarity < threshold:
                found = await self._first(exact, params)
        except (DBAPIError, OSError) as exc:
            log.warning("semantic cache unavailable: %s", exc)
            return None
        return found if found is not None and found.similarity >= threshold else None

    async def put(
        self,
        entry: Entry,
        answer: dict[str, Any],
        tokens_saved: int,
        ttl_s: int,
        max_entries: int,
    ) -> None:
        """Store an answer, then trim the tenant's rows to the live `max_entries` newest."""
        params = {
            "id": uuid.uuid4(),
            "tenant_id": entry.tenant_id,
            "partition_key": entry.partition_key,
            "user_id": entry.user_id,
            "model": entry.model,
            "dim": len(entry.vector),
            "embedding": vector_literal(entry.vector),
            "answer": orjson.dumps(answer).decode(),
            "tokens_saved": int(tokens_saved),
            "ttl_s": float(ttl_s),
        }
        trim = {"tenant_id": entry.tenant_id, "max_entries": int(max_entries)}
        try:
            async with self._db.transaction() as session:
                await session.execute(text(_INSERT), params)
                await session.execute(text(_TRIM), trim)
        except (DBAPIError, OSError) as exc:
            log.warning("semantic cache unavailable: %s", exc)

    async def _first(self, sql: str, params: dict[str, Any]) -> Found | None:
        # As the memory store: custom plans (the partial HNSW index needs the literal
        # dimension), and the search breadth for the index scan.
        settings = {"plan_cache_mode": "force_custom_plan", "hnsw.ef_search": str(self._ef_search)}
        async with self._db.tenant_reads(params["tenant_id"], settings) as session:
            row = (await session.execute(text(sql), params)).first()
        if row is None:
            return None
        return Found(answer=dict(row[0]), similarity=1.0 - float(row[1]))
