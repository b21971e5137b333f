"""Memories of users: the projection rows and the pgvector chunk store.

`memory_chunks.embedding` is an untyped vector so several embedding models
(and dimensions) can live side by side; each supported dimension gets its own
partial HNSW index over a typed cast (cosine distance). Searches always name
the dimension and the model, so a change of model never mixes vector spaces.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0500_memories"
down_revision = "0001"

TS = sa.DateTime(timezone=True)
INDEXED_DIMS = (384, 768, 1024, 1536)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "memories",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("metadata", JSONB, nullable=False, server_default="{}"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("chunks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("embedding_model", sa.String(200)),
        sa.Column("embedding_dim", sa.Integer),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("stored_at", TS),
    )
    op.create_index("ix_memories_tenant_user", "memories", ["tenant_id", "user_id", "id"])
    op.create_table(
        "memory_user_forgets",
        sa.Column("tenant_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("before", UUID(as_uuid=True), nullable=False),
    )
    op.execute(
        """
        CREATE TABLE memory_chunks (
            id text PRIMARY KEY,
            memory_id uuid NOT NULL,
            tenant_id uuid NOT NULL,
            user_id varchar(200) NOT NULL,
            chunk integer NOT NULL,
            text text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}',
            model varchar(200) NOT NULL,
            dim integer NOT NULL,
            embedding vector NOT NULL
        )
        """
    )
    op.create_index("ix_memory_chunks_owner", "memory_chunks", ["tenant_id", "user_id"])
    op.create_index("ix_memory_chunks_memory", "memory_chunks", ["memory_id"])
    for dim in INDEXED_DIMS:
        op.execute(
            f"CREATE INDEX ix_memory_chunks_hnsw_{dim} ON memory_chunks "
            f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE dim = {dim}"
        )


def downgrade() -> None:
    for table in ("memory_chunks", "memory_user_forgets", "memories"):
        op.drop_table(table)
