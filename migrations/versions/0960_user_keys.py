"""Per-user data keys: each sealed by the key ring; deleting a row shreds what it sealed."""

import sqlalchemy as sa
from alembic import op

revision = "0960_user_keys"
down_revision = "0950_conversations"

TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "user_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("vault_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "user_id", name="uq_user_keys_tenant_user"),
    )
    # Behind the tenant wall (0930_tenant_wall).
    op.execute("ALTER TABLE user_keys ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_wall ON user_keys FOR SELECT TO ayush_reader "
        f"USING (tenant_id = {TENANT})"
    )
    op.execute("GRANT SELECT ON user_keys TO ayush_reader")


def downgrade() -> None:
    op.drop_table("user_keys")
