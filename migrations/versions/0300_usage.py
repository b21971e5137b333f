"""Usage per tenant, key, user, model and day; monthly budgets and their spend."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0300_usage"
down_revision = "0001"

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(20, 8)


def upgrade() -> None:
    # A usage without a key or a user is stored under the nil UUID and "": a
    # primary key column cannot be NULL, and one row per group is the point.
    op.create_table(
        "usage_daily",
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("api_key_id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day", "api_key_id", "user_id", "model"),
    )
    op.create_table(
        "budgets",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("monthly_usd", MONEY, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("scope", "scope_id"),
    )
    # Spend of every tenant and key per month, budget or not: a budget set in
    # the middle of a month starts from what was already spent.
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", UUID(as_uuid=True), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("spent_usd", MONEY, nullable=False),
        sa.Column("alerted_pct", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("scope", "scope_id", "period"),
    )

    # The usage group's claims, apart from the shared processed_events: a
    # uuid key alone keeps the index small and inserts cheap at tens of
    # thousands a second, where (group text, id) pays a collated compare each.
    op.create_table(
        "usage_events_seen",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    )


def downgrade() -> None:
    for table in ("usage_events_seen", "budget_spend", "budgets", "usage_daily"):
        op.drop_table(table)
