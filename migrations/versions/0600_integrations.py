"""Webhook endpoints, deliveries, rules, connections and action attempts."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0600_integrations"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", UUID(as_uuid=True), primary_key=True)


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False)


def _created(name: str = "created_at") -> sa.Column:
    return sa.Column(name, TS, nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        _id(),
        _tenant(),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("signature_header", sa.String(100), nullable=False),
        sa.Column("secret_key_id", sa.String(64), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
        _created(),
    )
    op.create_index("ix_webhook_endpoints_tenant_id", "webhook_endpoints", ["tenant_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "endpoint_id",
            UUID(as_uuid=True),
            sa.ForeignKey("webhook_endpoints.id"),
            primary_key=True,
        ),
        sa.Column("delivery_id", sa.String(300), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("published_at", TS),
        _created("received_at"),
    )
    op.create_table(
        "webhook_rules",
        _id(),
        _tenant(),
        sa.Column(
            "endpoint_id", UUID(as_uuid=True), sa.ForeignKey("webhook_endpoints.id"), nullable=False
        ),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("filter", JSONB, nullable=False),
        sa.Column("job", JSONB),
        sa.Column("action", JSONB),
        _created(),
    )
    op.create_index("ix_webhook_rules_endpoint_id", "webhook_rules", ["endpoint_id"])
    op.create_table(
        "webhook_rule_runs",
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("rule_id", UUID(as_uuid=True), sa.ForeignKey("webhook_rules.id"), nullable=False),
        sa.Column("webhook_event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("context", JSONB, nullable=False),
        sa.Column("action", JSONB, nullable=False),
        _created(),
    )
    op.create_table(
        "connections",
        _id(),
        _tenant(),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        _created(),
    )
    op.create_index("ix_connections_tenant_id", "connections", ["tenant_id"])
    op.create_table(
        "action_attempts",
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", TS),
        sa.Column("result", JSONB),
        sa.Column("error", sa.Text),
        _created("updated_at"),
    )


def downgrade() -> None:
    for table in (
        "action_attempts",
        "connections",
        "webhook_rule_runs",
        "webhook_rules",
        "webhook_deliveries",
        "webhook_endpoints",
    ):
        op.drop_table(table)
