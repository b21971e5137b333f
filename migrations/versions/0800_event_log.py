"""The event log: an index of every archived event, for audit trails."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0800_event_log"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        # A dead-lettered copy keeps its event id: the topic tells them apart.
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("correlation_id", UUID(as_uuid=True), nullable=False),
        sa.Column("causation_id", UUID(as_uuid=True)),
        sa.Column("actor_kind", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(255), nullable=False),
        sa.Column("api_key_id", UUID(as_uuid=True)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("dead_letter_error", sa.Text),
        sa.Column("archived_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index(
        "ix_event_log_trail", "event_log", ["tenant_id", "correlation_id", "occurred_at"]
    )


def downgrade() -> None:
    op.drop_table("event_log")
