"""Files and batches belong to the user who made them (None: made by an API key for the tenant)."""

import sqlalchemy as sa
from alembic import op

revision = "0920_owner_user"
down_revision = "0911_user_rate_limits"
# The files and batches tables come from the batches branch of the history.
depends_on = "0700_batches"


def upgrade() -> None:
    for table in ("files", "batches"):
        op.add_column(table, sa.Column("user_id", sa.String(200), nullable=True))
        op.create_index(f"ix_{table}_tenant_user", table, ["tenant_id", "user_id"])


def downgrade() -> None:
    for table in ("files", "batches"):
        op.drop_index(f"ix_{table}_tenant_user", table_name=table)
        op.drop_column(table, "user_id")
