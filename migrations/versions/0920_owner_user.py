"""Files and batches belong to the user who made them (None: made by an API key for the tenant).

Revision ID: 0920_owner_user
Revises: 0900_key_roles (and needs 0700_batches, which made the tables)
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0920_owner_user"
down_revision: str | None = "0911_user_rate_limits"
branch_labels: str | Sequence[str] | None = None
# The files and batches tables come from the batches branch of the history.
depends_on: str | Sequence[str] | None = "0700_batches"


def upgrade() -> None:
    for table in ("files", "batches"):
        op.add_column(table, sa.Column("user_id", sa.String(200), nullable=True))
        op.create_index(f"ix_{table}_tenant_user", table, ["tenant_id", "user_id"])


def downgrade() -> None:
    for table in ("files", "batches"):
        op.drop_index(f"ix_{table}_tenant_user", table_name=table)
        op.drop_column(table, "user_id")
