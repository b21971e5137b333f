"""The event log table: one row per archived event, read by the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, Text, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlmodel import Field, SQLModel

from infra.db.engine import Database


class EventLogRow(SQLModel, table=True):
    __tablename__ = "event_log"

    event_id: uuid.UUID = Field(primary_key=True)
    topic: str = Field(primary_key=True, max_length=255)
    partition: int = Field(sa_column=Column(Integer, nullable=False))
    offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    type: str = Field(max_length=200)
    version: int
    tenant_id: uuid.UUID
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    actor_kind: str = Field(max_length=32)
    actor_id: str = Field(max_length=255)
    api_key_id: uuid.UUID | None = None
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    dead_letter_error: str | None = Field(default=None, sa_column=Column(Text))


async def record(db: Database, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows; an event already logged for its topic is kept as first written."""
    if not rows:
        return
    async with db.transaction() as session:
        # asyncpg caps a statement at 32767 parameters: 15 columns per row.
        for start in range(0, len(rows), 1000):
            await session.execute(
                insert(EventLogRow)
                .values(list(rows[start : start + 1000]))
                .on_conflict_do_nothing()
            )


async def job_trail(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID) -> list[EventLogRow]:
    """Every logged event of one job, oldest first; ties keep the time-ordered event id."""
    async with db.tenant_reads(tenant_id) as session:
        found = await session.execute(
            select(EventLogRow)
            .where(EventLogRow.tenant_id == tenant_id, EventLogRow.correlation_id == job_id)
            .order_by(EventLogRow.occurred_at, EventLogRow.event_id, EventLogRow.topic)
        )
        return list(found.scalars())
