"""Indexes for GET /v1/jobs: a tenant's jobs (or one user's) newest first by id (uuid7)."""

from alembic import op

revision = "0940_jobs_list"
down_revision = "0930_tenant_wall"


def upgrade() -> None:
    # Read backwards for "newest first"; `id < after` is the cursor.
    op.create_index("ix_jobs_tenant_id", "jobs", ["tenant_id", "id"])
    op.create_index("ix_jobs_tenant_user_id", "jobs", ["tenant_id", "user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_user_id", table_name="jobs")
    op.drop_index("ix_jobs_tenant_id", table_name="jobs")
