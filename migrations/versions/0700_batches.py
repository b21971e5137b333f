"""Files, batches and batch lines (OpenAI Files and Batches APIs)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0700_batches"
down_revision = "0001"

TS = sa.DateTime(timezone=True)
STAMPS = ("expires", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled")


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("storage_key", sa.String(500), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("deleted_at", TS),
    )
    op.create_index("ix_files_tenant_id", "files", ["tenant_id"])
    op.create_table(
        "batches",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("api_key_id", UUID(as_uuid=True), sa.ForeignKey("api_keys.id")),
        sa.Column("input_file_id", UUID(as_uuid=True), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("errors", JSONB),
        sa.Column("metadata", JSONB),
        sa.Column("output_file_id", UUID(as_uuid=True)),
        sa.Column("error_file_id", UUID(as_uuid=True)),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancelled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        *(sa.Column(f"{name}_at", TS) for name in STAMPS),
    )
    op.create_index("ix_batches_tenant_id", "batches", ["tenant_id", "id"])
    op.create_table(
        "batch_lines",
        sa.Column("job_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("batch_id", UUID(as_uuid=True), sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("custom_id", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.UniqueConstraint("batch_id", "line_no", name="uq_batch_lines_batch_line"),
    )


def downgrade() -> None:
    for table in ("batch_lines", "batches", "files"):
        op.drop_table(table)
