"""Row-level security as a second wall between tenants, for the ingress's reads.

Every table with a `tenant_id` column (and the tables whose rows belong to
such a row: a job's result, a batch's lines, ...) gets a policy that shows a
row only to the tenant named in the transaction's `ayush.tenant_id` setting.
The policies bind the role `ayush_reader` (NOLOGIN), which may only SELECT;
the ingress switches to it for its tenant reads (infra.db.engine
`tenant_reads`). The tables' owner, the user the platform connects as, is not
subject to the policies: writes and workers are unchanged.

Tables created later must enable the same policy in their own migration
(`tenant_wall(table)` below shows the statements); a test fails on any
`tenant_id` table without one.
"""

from alembic import op

revision = "0930_tenant_wall"
down_revision = "0920_owner_user"
# Every tenant table must exist first: run after the other branches' heads.
depends_on = (
    "0300_gateway",
    "0310_usage_limits",
    "0500_memories",
    "0600_integrations",
    "0710_batch_expiry",
    "0800_event_log",
)

ROLE = "ayush_reader"
POLICY = "tenant_wall"
# The tenant of the transaction; '' (a pooled connection after a transaction
# that set it) and unset both mean none, and then no row is visible.
TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"

# Rows without a tenant_id of their own: visible when their parent row is
# (the subquery runs under the parent's policy).
CHILDREN = {
    "tenants": f"id = {TENANT}",
    "job_results": "EXISTS (SELECT 1 FROM jobs WHERE jobs.id = job_results.job_id)",
    "action_attempts": "EXISTS (SELECT 1 FROM jobs WHERE jobs.id = action_attempts.job_id)",
    "batch_lines": "EXISTS (SELECT 1 FROM batches WHERE batches.id = batch_lines.batch_id)",
    "webhook_deliveries": (
        "EXISTS (SELECT 1 FROM webhook_endpoints "
        "WHERE webhook_endpoints.id = webhook_deliveries.endpoint_id)"
    ),
}

# Roles belong to the whole cluster: several databases may run this at once,
# so "already there" (either error a race gives) is success.
CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
"""

# The connecting user switches to the role with SET ROLE: it must be a member
# (a superuser needs no membership).
GRANT_ROLE = f"""
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, '{ROLE}', 'MEMBER') THEN
        EXECUTE format('GRANT {ROLE} TO %I', current_user);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
"""


def tenant_wall(table: str, using: str = f"tenant_id = {TENANT}") -> list[str]:
    """The statements that put one table behind the wall."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY} ON {table}",
        f"CREATE POLICY {POLICY} ON {table} FOR SELECT TO {ROLE} USING ({using})",
        f"GRANT SELECT ON {table} TO {ROLE}",
    ]


def _tenant_tables() -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
        "AND NOT a.attisdropped WHERE c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    return [row[0] for row in rows]


def upgrade() -> None:
    op.execute(CREATE_ROLE)
    op.execute(GRANT_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA {_schema()} TO {ROLE}")
    walled = {table: f"tenant_id = {TENANT}" for table in _tenant_tables()}
    for table, using in {**walled, **CHILDREN}.items():
        for statement in tenant_wall(table, using):
            op.execute(statement)


def downgrade() -> None:
    # The role stays: other databases of the cluster may still use it.
    for table in [*_tenant_tables(), *CHILDREN]:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE SELECT ON {table} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {_schema()} FROM {ROLE}")


def _schema() -> str:
    return str(op.get_bind().exec_driver_sql("SELECT quote_ident(current_schema())").scalar())
