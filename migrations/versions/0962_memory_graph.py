"""A user's newest chunks wait outside the HNSW graph until they are many.

Inserting into the graph costs Postgres about a millisecond of CPU a chunk, and a
small user's search never uses it: pgvector filters after the graph scan, so a user
who owns a sliver of the table falls back to an exact scan of their own chunks anyway.
So a chunk starts with `in_graph = false`, searched exactly through a partial index of
its owner, and the memory store moves a user's waiting chunks into the graph once
they pass AYUSH_MEMORY_GRAPH_AFTER. Chunks stored before this revision stay in it.

The HNSW indexes are rebuilt with the new predicate: on a large table this
migration takes as long as building them did.
"""

from alembic import op

revision = "0962_memory_graph"
down_revision = "0960_user_keys"

INDEXED_DIMS = (384, 768, 1024, 1536)


def upgrade() -> None:
    # Existing rows are in the graph already; new ones wait (no table rewrite).
    op.execute("ALTER TABLE memory_chunks ADD COLUMN in_graph boolean NOT NULL DEFAULT true")
    op.execute("ALTER TABLE memory_chunks ALTER COLUMN in_graph SET DEFAULT false")
    op.execute(
        "CREATE INDEX ix_memory_chunks_waiting ON memory_chunks (tenant_id, user_id) "
        "WHERE NOT in_graph"
    )
    op.execute(
        "CREATE INDEX ix_memory_chunks_graphed ON memory_chunks (tenant_id, user_id) WHERE in_graph"
    )
    for dim in INDEXED_DIMS:
        _hnsw(dim, f"dim = {dim} AND in_graph")


def downgrade() -> None:
    for dim in INDEXED_DIMS:
        _hnsw(dim, f"dim = {dim}")
    op.execute("DROP INDEX ix_memory_chunks_graphed")
    op.execute("DROP INDEX ix_memory_chunks_waiting")
    op.execute("ALTER TABLE memory_chunks DROP COLUMN in_graph")


def _hnsw(dim: int, where: str) -> None:
    op.execute(f"DROP INDEX IF EXISTS ix_memory_chunks_hnsw_{dim}")
    op.execute(
        f"CREATE INDEX ix_memory_chunks_hnsw_{dim} ON memory_chunks "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE {where}"
    )
