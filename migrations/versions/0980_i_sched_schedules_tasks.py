"""Schedules, their fired slots, the runs waiting on a job, and users' tasks.

`schedules`: what runs when (a cron expression in a time zone, an interval or one
time), what it runs (`target`, the templates rules use; or a task's reminder), what
a slot missed while the scheduler was down becomes (`missed`, `missed_max`), and
`next_fire_at`, the first slot not yet fired. `schedule_slots`: one row per fired
slot, its id derived from (schedule, slot time): the claim that makes a slot fire
once. `schedule_runs`: a job a schedule started whose answer feeds an action.
`tasks`: a user's tasks; each reminder is a one-shot schedule of the task's.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0980_i_sched_schedules_tasks"
down_revision = "0970_h_semcache_semantic_cache"

TENANT = "NULLIF(current_setting('ayush.tenant_id', true), '')::uuid"
TABLES = ("tasks", "schedules", "schedule_slots", "schedule_runs")


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id"), nullable=False)


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False, server_default=""),
        _at("due_at", nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("reminders", JSONB, nullable=False),
        _at("created_at"),
        _at("updated_at"),
        _at("completed_at", nullable=True),
    )
    op.create_index("ix_tasks_tenant_user", "tasks", ["tenant_id", "user_id", "created_at"])
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=True),
        _at("at", nullable=True),
        sa.Column("target", JSONB, nullable=False),
        sa.Column("missed", sa.String(16), nullable=False),
        sa.Column("missed_max", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column(
            "task_id", sa.Uuid(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=True
        ),
        _at("next_fire_at", nullable=True),
        _at("last_fired_at", nullable=True),
        _at("created_at"),
        _at("updated_at"),
    )
    op.create_index("ix_schedules_tenant", "schedules", ["tenant_id", "created_at"])
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        postgresql_where=sa.text("NOT paused AND next_fire_at IS NOT NULL"),
    )
    op.create_index("ix_schedules_task", "schedules", ["task_id"])
    op.create_table(
        "schedule_slots",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        # No foreign key: a deleted schedule's fired slots stay as its history.
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        _at("slot_at"),
        _at("fired_at"),
        sa.Column("late", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_schedule_slots_schedule", "schedule_slots", ["schedule_id", "slot_at"])
    op.create_table(
        "schedule_runs",
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id"), primary_key=True),
        _tenant(),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("slot_id", sa.Uuid(), nullable=False),
        sa.Column("context", JSONB, nullable=False),
        sa.Column("action", JSONB, nullable=False),
        _at("created_at"),
    )
    # Behind the tenant wall (0930_tenant_wall).
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_wall ON {table} FOR SELECT TO ayush_reader "
            f"USING (tenant_id = {TENANT})"
        )
        op.execute(f"GRANT SELECT ON {table} TO ayush_reader")


def downgrade() -> None:
    for table in ("schedule_runs", "schedule_slots", "schedules", "tasks"):
        op.drop_table(table)
