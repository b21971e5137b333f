"""The semantic cache: earlier answers found by the meaning of the question.

One row per answered request that asked for it: the tenant, the partition key
(a hash of everything that must match exactly: model after routing, sampling
parameters, tools, the conversation before the last user turn), the embedding
of the last user turn (untyped vector, its model and dimension beside it, as in
`memory_chunks`), the answer and the tokens it saved. `user_id` names the user
whose job wrote the row, so forgetting that user deletes it. Rows past
`expires_at` are never served; each tenant keeps a bounded number (the oldest go).
"""

from alembic import op

revision = "0970_h_semcache_semantic_cache"
down_revision = "0962_memory_graph"

TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"
INDEXED_DIMS = (384, 768, 1024, 1536)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE semantic_cache (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            partition_key varchar(64) NOT NULL,
            user_id varchar(200),
            model varchar(200) NOT NULL,
            dim integer NOT NULL,
            embedding vector NOT NULL,
            answer jsonb NOT NULL,
            tokens_saved integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.create_index(
        "ix_semantic_cache_partition", "semantic_cache", ["tenant_id", "partition_key", "model"]
    )
    op.create_index("ix_semantic_cache_age", "semantic_cache", ["tenant_id", "created_at"])
    op.create_index("ix_semantic_cache_user", "semantic_cache", ["tenant_id", "user_id"])
    for dim in INDEXED_DIMS:
        op.execute(
            f"CREATE INDEX ix_semantic_cache_hnsw_{dim} ON semantic_cache "
            f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE dim = {dim}"
        )
    # Behind the tenant wall (0930_tenant_wall).
    op.execute("ALTER TABLE semantic_cache ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_wall ON semantic_cache FOR SELECT TO ayush_reader "
        f"USING (tenant_id = {TENANT})"
    )
    op.execute("GRANT SELECT ON semantic_cache TO ayush_reader")


def downgrade() -> None:
    op.drop_table("semantic_cache")
