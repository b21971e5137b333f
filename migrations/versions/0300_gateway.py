"""Job results of the AI gateway: tool calls and cache hits."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0300_gateway"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("job_results", sa.Column("tool_calls", JSONB, nullable=True))
    op.add_column(
        "job_results", sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_column("job_results", "cached")
    op.drop_column("job_results", "tool_calls")
