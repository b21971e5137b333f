"""Connections get a lifecycle: `status` (active | deleted), `updated_at`, `rotated_at` (the
last credential rotation), `last_used_at` (the last action run on it) and `deleted_at`.

A deleted connection keeps its row (jobs name it) with its sealed credentials wiped, so an
action on it fails saying it was deleted rather than that it never existed.
"""

from alembic import op

revision = "0995_i_conns_lifecycle"
down_revision = "0990_i_alerts_rules_episodes"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE connections
            ADD COLUMN status varchar(16) NOT NULL DEFAULT 'active',
            ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
            ADD COLUMN rotated_at timestamptz,
            ADD COLUMN last_used_at timestamptz,
            ADD COLUMN deleted_at timestamptz
        """
    )
    op.execute("UPDATE connections SET updated_at = created_at")
    op.create_index("ix_connections_tenant_live", "connections", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_connections_tenant_live", table_name="connections")
    op.execute(
        """
        ALTER TABLE connections
            DROP COLUMN status, DROP COLUMN updated_at, DROP COLUMN rotated_at,
            DROP COLUMN last_used_at, DROP COLUMN deleted_at
        """
    )
