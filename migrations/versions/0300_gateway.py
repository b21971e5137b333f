"""Job results of the AI gateway: tool calls and cache hits.

Revision ID: 0300_gateway
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0300_gateway"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job_results", sa.Column("tool_calls", JSONB, nullable=True))
    op.add_column(
        "job_results", sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_column("job_results", "cached")
    op.drop_column("job_results", "tool_calls")
