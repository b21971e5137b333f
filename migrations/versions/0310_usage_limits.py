"""Per-key rate limits; the day each usage claim was made, so old claims can be pruned."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0310_usage_limits"
down_revision = "0300_usage"


def upgrade() -> None:
    # NULL: the setting's default applies to that limit.
    op.create_table(
        "rate_limit_overrides",
        sa.Column("api_key_id", UUID(as_uuid=True), sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("requests_per_min", sa.Integer, nullable=True),
        sa.Column("tokens_per_min", sa.BigInteger, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # Claims made before this migration get its day: they are kept a full
    # retention period from now, never pruned early. COPY fills the day in.
    op.add_column(
        "usage_events_seen",
        sa.Column("claimed_on", sa.Date, nullable=False, server_default=sa.text("CURRENT_DATE")),
    )
    # No index on it: the usage group COPYs tens of thousands of claims a
    # second and every index slows that down; pruning walks the table instead.


def downgrade() -> None:
    op.drop_column("usage_events_seen", "claimed_on")
    op.drop_table("rate_limit_overrides")
