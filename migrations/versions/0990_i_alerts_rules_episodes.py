"""Alerts: a tenant's alert rules, their episodes, and the observations they are evaluated on.

`alert_rules`: what to watch (`kind` and its `params`) and where a firing goes (`channels`).

`alert_episodes`: one row per episode of a rule, `firing` until the condition stops holding,
then `resolved`. At most one firing episode per rule (a partial unique index): two evaluators
cannot both open one. The id derives from rule and episode start; `fired_sent` and
`resolved_sent` say whether the episode's events went out (an evaluator that died between
opening an episode and publishing it publishes it, under the same id, on its next pass).

`alert_observations`: one row per event the alerts group counts (its id is the event's, so
a redelivered event counts once): a model call (failed or not, its latency), a connector
call, a spend, a budget crossing, a dead letter; pruned past the longest window.
"""

from alembic import op

revision = "0990_i_alerts_rules_episodes"
down_revision = "0985_i_hooks_outbound_webhooks"

TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE alert_rules (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL REFERENCES tenants(id),
            name varchar(200) NOT NULL,
            kind varchar(32) NOT NULL,
            params jsonb NOT NULL,
            channels jsonb NOT NULL,
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.create_index("ix_alert_rules_tenant", "alert_rules", ["tenant_id", "id"])
    op.execute(
        """
        CREATE TABLE alert_episodes (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            rule_id uuid NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
            state varchar(16) NOT NULL DEFAULT 'firing',
            opened_at timestamptz NOT NULL,
            resolved_at timestamptz,
            value double precision NOT NULL,
            threshold double precision NOT NULL,
            fired_sent boolean NOT NULL DEFAULT false,
            resolved_sent boolean NOT NULL DEFAULT false
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX ux_alert_episodes_firing ON alert_episodes (rule_id) "
        "WHERE state = 'firing'"
    )
    op.create_index("ix_alert_episodes_tenant", "alert_episodes", ["tenant_id", "opened_at"])
    op.execute(
        "CREATE INDEX ix_alert_episodes_unsent ON alert_episodes (rule_id) "
        "WHERE NOT fired_sent OR (state = 'resolved' AND NOT resolved_sent)"
    )
    op.execute(
        """
        CREATE TABLE alert_observations (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            kind varchar(16) NOT NULL,
            target varchar(200) NOT NULL,
            at timestamptz NOT NULL,
            failed boolean NOT NULL DEFAULT false,
            latency_ms double precision,
            amount numeric(18, 8)
        )
        """
    )
    op.create_index(
        "ix_alert_observations_window", "alert_observations", ["tenant_id", "kind", "at"]
    )
    op.create_index("ix_alert_observations_at", "alert_observations", ["at"])
    # Behind the tenant wall (0930_tenant_wall).
    for table in ("alert_rules", "alert_episodes", "alert_observations"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_wall ON {table} FOR SELECT TO ayush_reader "
            f"USING (tenant_id = {TENANT})"
        )
        op.execute(f"GRANT SELECT ON {table} TO ayush_reader")


def downgrade() -> None:
    op.drop_table("alert_observations")
    op.drop_table("alert_episodes")
    op.drop_table("alert_rules")
