"""Tables of schedules, their fired slots and runs, and users' tasks (0980_i_sched)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from infra.db.models import timestamp, timestamp_now


class Schedule(SQLModel, table=True):
    __tablename__ = "schedules"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    user_id: str | None = Field(default=None, max_length=200)
    name: str = Field(max_length=200)
    cron: str | None = Field(default=None, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    interval_s: int | None = None
    at: datetime | None = timestamp()
    # The rule templates' {"job": …, "action": …}, or {"task_due": "<task id>"}.
    target: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    missed: str = Field(default="run_once", max_length=16)
    missed_max: int = 10
    paused: bool = False
    task_id: uuid.UUID | None = Field(default=None, foreign_key="tasks.id")
    next_fire_at: datetime | None = timestamp()
    last_fired_at: datetime | None = timestamp()
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()


class ScheduleSlot(SQLModel, table=True):
    """A fired slot: its id is the `schedule.fired` event's."""

    __tablename__ = "schedule_slots"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    schedule_id: uuid.UUID
    slot_at: datetime = timestamp_now()
    fired_at: datetime = timestamp_now()
    late: bool = False


class ScheduleRun(SQLModel, table=True):
    """A job a schedule started whose answer feeds an action."""

    __tablename__ = "schedule_runs"

    job_id: uuid.UUID = Field(primary_key=True, foreign_key="jobs.id")
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    schedule_id: uuid.UUID
    slot_id: uuid.UUID
    context: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    action: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_now()


class Task(SQLModel, table=True):
    __tablename__ = "tasks"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    user_id: str | None = Field(default=None, max_length=200)
    title: str = Field(max_length=500)
    notes: str = Field(default="", sa_column=Column(Text, nullable=False))
    due_at: datetime | None = timestamp()
    status: str = Field(default="open", max_length=16)
    priority: int = 0
    reminders: list[int] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()
    completed_at: datetime | None = timestamp()
