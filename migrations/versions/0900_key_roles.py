"""API keys get a role, scopes and a lifecycle: expiry, IP allow-list, last use, rotation."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0900_key_roles"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("role", sa.String(16), nullable=False, server_default="developer")
    )
    op.execute("UPDATE api_keys SET role = 'admin' WHERE is_admin")
    op.drop_column("api_keys", "is_admin")
    op.create_check_constraint(
        "ck_api_keys_role", "api_keys", "role IN ('admin', 'developer', 'service', 'auditor')"
    )
    op.add_column(
        "api_keys", sa.Column("scopes", JSONB, nullable=False, server_default=sa.text("'[]'"))
    )
    op.add_column("api_keys", sa.Column("expires_at", TS))
    # CIDRs the key may be used from; empty means anywhere.
    op.add_column(
        "api_keys", sa.Column("allowed_ips", JSONB, nullable=False, server_default=sa.text("'[]'"))
    )
    op.add_column("api_keys", sa.Column("last_used_at", TS))
    # After a rotation the previous secret keeps working until previous_valid_until.
    op.add_column("api_keys", sa.Column("previous_key_hash", sa.String(64), unique=True))
    op.add_column("api_keys", sa.Column("previous_valid_until", TS))


def downgrade() -> None:
    for column in (
        "previous_valid_until",
        "previous_key_hash",
        "last_used_at",
        "allowed_ips",
        "expires_at",
        "scopes",
    ):
        op.drop_column("api_keys", column)
    op.drop_constraint("ck_api_keys_role", "api_keys")
    op.add_column(
        "api_keys", sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.execute("UPDATE api_keys SET is_admin = (role = 'admin')")
    op.drop_column("api_keys", "role")
