"""Conversations, their items and responses (the Responses and Conversations APIs)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0950_conversations"
down_revision = "0940_jobs_list"

TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"
TABLES = ("conversations", "conversation_items", "responses")


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id"), nullable=False)


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("metadata", JSONB, nullable=False),
        _at("created_at"),
        _at("updated_at"),
    )
    op.create_index(
        "ix_conversations_tenant_user_updated",
        "conversations",
        ["tenant_id", "user_id", sa.text("updated_at DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "conversation_items",
        sa.Column("id", sa.String(200), primary_key=True),
        _tenant(),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("response_id", sa.Uuid(), nullable=True),
        sa.Column("phase", sa.SmallInteger(), nullable=True),
        sa.Column("position", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("item", JSONB, nullable=False),
        _at("created_at"),
    )
    op.create_index(
        "ix_conversation_items_conversation",
        "conversation_items",
        ["conversation_id", "position"],
        postgresql_where=sa.text("conversation_id IS NOT NULL"),
    )
    op.create_index(
        "ix_conversation_items_response",
        "conversation_items",
        ["response_id", "position"],
        postgresql_where=sa.text("response_id IS NOT NULL"),
    )
    op.create_table(
        "responses",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("previous_response_id", sa.Uuid(), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("store", sa.Boolean(), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("params", JSONB, nullable=False),
        sa.Column("usage", JSONB, nullable=True),
        sa.Column("error", JSONB, nullable=True),
        sa.Column("context", JSONB, nullable=True),
        _at("created_at"),
        _at("completed_at", nullable=True),
    )
    op.create_index("ix_responses_tenant_created", "responses", ["tenant_id", "created_at"])
    for table in TABLES:  # behind the tenant wall (0930_tenant_wall)
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_wall ON {table} FOR SELECT TO ayush_reader "
            f"USING (tenant_id = {TENANT})"
        )
        op.execute(f"GRANT SELECT ON {table} TO ayush_reader")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
