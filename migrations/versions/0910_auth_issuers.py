"""Sign-in token issuers: whose tokens (OIDC / JWT) act as a tenant's users."""

import sqlalchemy as sa
from alembic import op

revision = "0910_auth_issuers"
down_revision = "0900_key_roles"


def upgrade() -> None:
    op.create_table(
        "auth_issuers",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("audience", sa.String(500), nullable=False),
        # Exactly one way to check signatures: the issuer's public keys, or a shared secret.
        sa.Column("jwks_url", sa.String(2000)),
        sa.Column("secret_key_id", sa.String(64)),
        sa.Column("secret_sealed", sa.LargeBinary),
        sa.Column("user_claim", sa.String(100), nullable=False, server_default="sub"),
        sa.Column("role_claim", sa.String(100)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # Several tenants may trust one issuer (one identity provider, several apps): the
        # audience tells their tokens apart. Within a tenant the pair is registered once.
        sa.UniqueConstraint("tenant_id", "issuer", "audience", name="uq_auth_issuers_audience"),
        sa.CheckConstraint(
            "(jwks_url IS NULL) <> (secret_sealed IS NULL)", name="ck_auth_issuers_one_key"
        ),
    )
    # Verification looks issuers up by the token's `iss`, across tenants.
    op.create_index("ix_auth_issuers_issuer", "auth_issuers", ["issuer"])


def downgrade() -> None:
    op.drop_index("ix_auth_issuers_issuer", "auth_issuers")
    op.drop_table("auth_issuers")
