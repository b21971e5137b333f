"""Outbound webhooks: subscriptions of URLs to public event types, and their messages.

`webhook_subscriptions`: a tenant's URL, the event types (patterns) it receives, and its
signing secrets sealed together (the current one and, for an overlap after a rotation, the
previous one, valid until `previous_valid_until`). `failing_since` is the first failed
attempt since the last success; a subscription failing past the disabling window is
disabled (`enabled` false, `disabled_reason`).

`webhook_messages`: one row per (subscription, event), the public body as sent (redelivery
sends the same bytes under the same webhook-id), the retry step and the next attempt's time
(the due-attempts loop reads `pending` rows by it), and the latest attempt's outcome.
"""

from alembic import op

revision = "0985_i_hooks_outbound_webhooks"
down_revision = "0980_i_sched_schedules_tasks"

TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_subscriptions (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL REFERENCES tenants(id),
            url varchar(2000) NOT NULL,
            event_types jsonb NOT NULL,
            description varchar(500),
            enabled boolean NOT NULL DEFAULT true,
            disabled_reason varchar(500),
            secret_key_id varchar(64) NOT NULL,
            secret_sealed bytea NOT NULL,
            previous_valid_until timestamptz,
            failing_since timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.create_index("ix_webhook_subscriptions_tenant", "webhook_subscriptions", ["tenant_id"])
    op.execute(
        """
        CREATE TABLE webhook_messages (
            id uuid PRIMARY KEY,
            subscription_id uuid NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
            tenant_id uuid NOT NULL,
            event_id uuid NOT NULL,
            event_type varchar(100) NOT NULL,
            body text NOT NULL,
            status varchar(16) NOT NULL DEFAULT 'pending',
            step integer NOT NULL DEFAULT 0,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            lease_until timestamptz,
            last_status_code integer,
            last_latency_ms integer,
            last_response varchar(1000),
            last_error varchar(1000),
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz,
            UNIQUE (subscription_id, event_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_messages_due ON webhook_messages "
        "(subscription_id, next_attempt_at) WHERE status = 'pending'"
    )
    op.create_index(
        "ix_webhook_messages_log", "webhook_messages", ["subscription_id", "created_at"]
    )
    # Behind the tenant wall (0930_tenant_wall).
    for table in ("webhook_subscriptions", "webhook_messages"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_wall ON {table} FOR SELECT TO ayush_reader "
            f"USING (tenant_id = {TENANT})"
        )
        op.execute(f"GRANT SELECT ON {table} TO ayush_reader")


def downgrade() -> None:
    op.drop_table("webhook_messages")
    op.drop_table("webhook_subscriptions")
