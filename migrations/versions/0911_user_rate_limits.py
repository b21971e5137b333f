"""Rate limits per end user of a tenant, and the tenant's default for its users."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0911_user_rate_limits"
down_revision = "0910_auth_issuers"


def upgrade() -> None:
    # user_id "" is the tenant's default for users without limits of their own (a user id
    # is 1 to 200 characters). NULL: that limit falls back (user -> default -> none).
    op.create_table(
        "user_rate_limits",
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("requests_per_min", sa.Integer, nullable=True),
        sa.Column("tokens_per_min", sa.BigInteger, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("tenant_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("user_rate_limits")
