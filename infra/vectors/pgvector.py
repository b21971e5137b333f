"""The pgvector store: chunks in Postgres, searched through an HNSW index (cosine).

The embedding column is untyped so several models can coexist; each indexed
dimension has a partial HNSW index over `embedding::vector(dim)` (see the
migration), which is why the dimension is written into the SQL as a literal.

pgvector 0.6 filters HNSW results after the index scan: with a user who owns
a small share of the table, the index can return fewer than `top_k` rows of
that user. Then the search falls back to an exact scan of the user's own
chunks, which is small in exactly that case.

For the same reason a user's chunks wait outside the graph (`in_graph`
false, found by an exact scan of that user's waiting chunks) until they pass
`graph_after`: then they all move in at once. Inserting into the graph is what
a stored chunk costs Postgres (about a millisecond of CPU), and a small user's
search would not use it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from infra.db.engine import Database
from infra.errors import PermanentError, TransientError
from infra.vectors.base import Chunk, Hit, Query

_COLUMNS = "memory_id, chunk, text, metadata"


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


def vector_texts(vectors: Sequence[Sequence[float]]) -> list[str]:
    """Vectors of one dimension in pgvector's text form, as float32 (what it stores)."""
    rows = np.asarray(vectors, dtype=np.float32)  # an array("f") row is copied, not parsed
    return [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode() for row in rows]


_UPSERT_ROWS = 1000  # chunks per INSERT statement at most
_SIDE_BY_SIDE = 4  # a list's slices written at once
_SLICE_MIN = 100  # a shorter list is one statement
# The vectors travel as text in pgvector's own form ("[x,y,…]"), written by orjson from
# float32 arrays: far cheaper on the client than a real[] of Python floats.
_UPSERT = """
    INSERT INTO memory_chunks
        (id, memory_id, tenant_id, user_id, chunk, text, metadata, model, dim, embedding)
    SELECT r.id, r.memory_id, r.tenant_id, r.user_id, r.chunk, r.body,
           CAST(r.metadata AS jsonb), r.model, v.dim,
           CAST(r.embedding AS vector)
    FROM unnest(CAST(:id AS text[]), CAST(:memory_id AS uuid[]), CAST(:tenant_id AS uuid[]),
                CAST(:user_id AS text[]), CAST(:chunk AS int[]), CAST(:text AS text[]),
                CAST(:metadata AS text[]), CAST(:model AS text[]), CAST(:embedding AS text[]))
        AS r(id, memory_id, tenant_id, user_id, chunk, body, metadata, model, embedding)
    CROSS JOIN (SELECT CAST(:dim AS int) AS dim) AS v
    ON CONFLICT (id) DO UPDATE SET
        text = EXCLUDED.text, metadata = EXCLUDED.metadata, model = EXCLUDED.model,
        dim = EXCLUDED.dim, embedding = EXCLUDED.embedding
"""


# Of the owners given, those with more than `after` chunks waiting: each counted through
# the partial index of waiting chunks, and no further than it needs to.
_CROWDED = """
    SELECT o.tenant_id, o.user_id
    FROM unnest(CAST(:tenant AS uuid[]), CAST(:user AS text[])) AS o(tenant_id, user_id)
    WHERE (SELECT count(*) FROM (
        SELECT 1 FROM memory_chunks AS w
        WHERE w.tenant_id = o.tenant_id AND w.user_id = o.user_id AND NOT w.in_graph
        LIMIT :after + 1) AS waiting) > :after
"""
_TO_GRAPH = (
    "UPDATE memory_chunks SET in_graph = true "
    "WHERE tenant_id = :tenant AND user_id = :user AND NOT in_graph"
)


def _columns(chunks: Sequence[Chunk]) -> dict[str, Any]:
    """The parameters of `_UPSERT` for chunks of one dimension."""
    return {
        "id": [c.id for c in chunks],
        "memory_id": [c.memory_id for c in chunks],
        "tenant_id": [c.tenant_id for c in chunks],
        "user_id": [c.user_id for c in chunks],
        "chunk": [c.chunk for c in chunks],
        "text": [c.text for c in chunks],
        "metadata": [orjson.dumps(dict(c.metadata)).decode() for c in chunks],
        "model": [c.model for c in chunks],
        "dim": len(chunks[0].vector),
        "embedding": vector_texts([c.vector for c in chunks]),
    }


class PgVectorStore:
    name = "pgvector"

    def __init__(
        self, db: Database, dim: int, ef_search: int = 100, graph_after: int = 200
    ) -> None:
        self._db = db
        self._dim = int(dim)
        self._ef_search = int(ef_search)
        self._graph_after = int(graph_after)

    async def upsert(self, chunks: Sequence[Chunk]) -> None:
        # A row per chunk id (the last one given wins: one statement cannot update a row
        # twice), a statement per slice of one dimension. The slices go side by side, each
        # in its own transaction: what bounds a list is Postgres inserting into the HNSW
        # graph, one core per connection. A failed slice fails the call; a redo rewrites.
        unique = list({c.id: c for c in chunks}.values())
        by_dim: dict[int, list[Chunk]] = {}
        for c in unique:
            by_dim.setdefault(len(c.vector), []).append(c)
        slices = []
        for same in by_dim.values():
            size = min(_UPSERT_ROWS, max(_SLICE_MIN, -(-len(same) // _SIDE_BY_SIDE)))
            slices += [same[i : i + size] for i in range(0, len(same), size)]
        # No flush wait: the memory row's commit, which always follows, flushes the log
        # up to itself and so these writes too; a crash before that leaves the event
        # unclaimed, and it is redone.
        await asyncio.gather(
            *(self._run(_UPSERT, _columns(part), wait_flush=False) for part in slices)
        )
        await self._to_graph({(c.tenant_id, c.user_id) for c in unique})

    async def _to_graph(self, owners: set[tuple[uuid.UUID, str]]) -> None:
        """Move the waiting chunks of those owners who have more than `graph_after`
        into the graph. Any time will do: a crash before leaves them waiting, still found."""
        if not owners:
            return
        tenants, users = [t for t, _ in owners], [u for _, u in owners]
        params = {"tenant": tenants, "user": users, "after": self._graph_after}
        with _translated():  # several tenants at once: the writer's view, not a tenant's
            async with self._db.session() as session:
                crowded = (await session.execute(text(_CROWDED), params)).all()
        for tenant, user in crowded:  # rare: once for every `graph_after` chunks of a user
            await self._run(_TO_GRAPH, {"tenant": tenant, "user": user})

    async def search(self, query: Query) -> list[Hit]:
        if len(query.vector) != self._dim:
            raise PermanentError(
                f"query vector has {len(query.vector)} dimensions, store has {self._dim}"
            )
        dim = self._dim
        params: dict[str, Any] = {
            "tenant_id": query.tenant_id,
            "user_id": query.user_id,
            "model": query.model,
            "filter": json.dumps(dict(query.filter)),
            "q": vector_literal(query.vector),
            "k": int(query.top_k),
        }
        owner = (
            f"dim = {dim} AND tenant_id = :tenant_id AND user_id = :user_id "
            "AND model = :model AND metadata @> CAST(:filter AS jsonb)"
        )
        distance = f"(embedding::vector({dim}) <=> CAST(CAST(:q AS text) AS vector({dim})))"
        # The user's waiting chunks, exactly; and the graph's nearest, when they have any
        # there (a one-time check: an empty graph scan is the expensive kind).
        graphed = (
            "EXISTS (SELECT 1 FROM memory_chunks AS g WHERE g.tenant_id = :tenant_id "
            "AND g.user_id = :user_id AND g.in_graph)"
        )
        approximate = (
            f"(SELECT {_COLUMNS}, {distance} AS distance FROM memory_chunks "
            f"WHERE {owner} AND NOT in_graph ORDER BY distance LIMIT :k) UNION ALL "
            f"(SELECT {_COLUMNS}, {distance} AS distance FROM memory_chunks "
            f"WHERE {owner} AND in_graph AND {graphed} ORDER BY distance LIMIT :k) "
            "ORDER BY distance LIMIT :k"
        )
        rows = await self._fetch(approximate, params, ef_search=max(self._ef_search, query.top_k))
        if len(rows) < query.top_k:
            exact = (
                f"WITH own AS MATERIALIZED (SELECT {_COLUMNS}, embedding FROM memory_chunks "
                f"WHERE {owner}) SELECT {_COLUMNS}, {distance} AS distance FROM own "
                f"ORDER BY distance LIMIT :k"
            )
            rows = await self._fetch(exact, params)
        return [
            Hit(
                memory_id=row[0],
                chunk=row[1],
                text=row[2],
                metadata=dict(row[3]),
                score=1.0 - float(row[4]),
            )
            for row in rows
        ]

    async def delete(
        self, tenant_id: uuid.UUID, user_id: str, memory_ids: Sequence[uuid.UUID]
    ) -> None:
        if not memory_ids:
            return
        await self._run(
            "DELETE FROM memory_chunks WHERE tenant_id = :tenant_id AND user_id = :user_id "
            "AND memory_id = ANY(:ids)",
            {"tenant_id": tenant_id, "user_id": user_id, "ids": list(memory_ids)},
        )

    async def memory_ids(self, tenant_id: uuid.UUID, user_id: str) -> set[uuid.UUID]:
        rows = await self._fetch(
            "SELECT DISTINCT memory_id FROM memory_chunks "
            "WHERE tenant_id = :tenant_id AND user_id = :user_id",
            {"tenant_id": tenant_id, "user_id": user_id},
        )
        return {row[0] for row in rows}

    async def close(self) -> None:
        return None  # the Database belongs to whoever built this store

    async def _run(self, sql: str, params: Any, *, wait_flush: bool = True) -> None:
        with _translated():
            async with self._db.transaction(durable=wait_flush) as session:
                await session.execute(text(sql), params)

    async def _fetch(
        self, sql: str, params: dict[str, Any], ef_search: int | None = None
    ) -> list[Any]:
        # Transaction-local settings, in one round trip with the tenant's. A prepared
        # statement turns to a generic plan after five runs, and a generic plan cannot
        # use the partial, per-dimension HNSW index: force custom plans.
        settings = {
            "plan_cache_mode": "force_custom_plan",
            "hnsw.ef_search": str(ef_search or self._ef_search),
        }
        with _translated():
            async with self._db.tenant_reads(params["tenant_id"], settings) as session:
                return list((await session.execute(text(sql), params)).all())


@contextmanager
def _translated() -> Iterator[None]:
    """Postgres' failures as ours: unreachable or cut off is transient, the rest is not."""
    try:
        yield
    except (OperationalError, OSError) as exc:
        raise TransientError(f"pgvector: {exc}") from exc
    except DBAPIError as exc:
        raise PermanentError(f"pgvector: {exc}") from exc
