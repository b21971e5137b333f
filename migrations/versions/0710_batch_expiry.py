"""Batches that outlive their completion window: when they expired, and finding them."""

import sqlalchemy as sa
from alembic import op

revision = "0710_batch_expiry"
down_revision = "0700_batches"


def upgrade() -> None:
    op.add_column("batches", sa.Column("expired_at", sa.DateTime(timezone=True)))
    # The expiry sweep looks only at open batches, a small part of the table.
    op.create_index(
        "ix_batches_open_expires_at",
        "batches",
        ["expires_at"],
        postgresql_where=sa.text("status IN ('in_progress', 'finalizing')"),
    )


def downgrade() -> None:
    op.drop_index("ix_batches_open_expires_at", table_name="batches")
    op.drop_column("batches", "expired_at")
