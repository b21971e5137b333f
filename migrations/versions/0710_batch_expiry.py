"""Batches that outlive their completion window: when they expired, and finding them.

Revision ID: 0710_batch_expiry
Revises: 0700_batches
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0710_batch_expiry"
down_revision: str | None = "0700_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
