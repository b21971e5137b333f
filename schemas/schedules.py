"""Schedules and tasks: what the API takes and shows, and the events they publish."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.integrations import RuleAction, RuleJob
from schemas.pages import IdPage
from schemas.request import RequestModel

SCHEDULE_FIRED = "schedule.fired"
TASK_DUE = "task.due"

Missed = Literal["skip", "run_once", "run_all"]
TaskStatus = Literal["open", "done"]


class ScheduleTarget(RequestModel):
    """What a slot runs: an AI job, an action, or a job whose answer (`{{ result }}`)
    feeds the action; the templates rules use, with `{{ schedule.name }}` and
    `{{ slot_at }}` to fill in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: RuleJob | None = None
    action: RuleAction | None = None

    @model_validator(mode="after")
    def _something_to_do(self) -> ScheduleTarget:
        if self.job is None and self.action is None:
            raise ValueError("a target needs a job, an action or both")
        return self


class ScheduleCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(default=None, max_length=200, description="5 fields")
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone of `cron`")
    interval_s: int | None = Field(default=None, ge=1, le=366 * 86400)
    at: datetime | None = Field(default=None, description="one time, ISO 8601 with offset")
    target: ScheduleTarget
    missed: Missed = "run_once"
    missed_max: int = Field(default=10, ge=1, le=1000, description="bound of run_all")
    paused: bool = False


class ScheduleUpdate(RequestModel):
    """PATCH: the fields given replace the schedule's; timing fields replace its timing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    cron: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    interval_s: int | None = Field(default=None, ge=1, le=366 * 86400)
    at: datetime | None = None
    target: ScheduleTarget | None = None
    missed: Missed | None = None
    missed_max: int | None = Field(default=None, ge=1, le=1000)
    paused: bool | None = None


class ScheduleView(BaseModel):
    id: uuid.UUID
    name: str
    user_id: str | None
    cron: str | None
    timezone: str
    interval_s: int | None
    at: datetime | None
    target: dict[str, Any]
    missed: Missed
    missed_max: int
    paused: bool
    task_id: uuid.UUID | None
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(IdPage[ScheduleView]):
    """GET /v1/schedules: oldest first."""


class ScheduleFired(BaseModel):
    """One slot of a schedule fired. The envelope's id is the slot's id, uuid5 of
    (schedule, slot time): every copy of the scheduler publishes the same one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schedule_id: uuid.UUID
    name: str
    user_id: str | None = None
    slot_at: datetime
    fired_at: datetime
    late: bool = Field(description="fired after its time, by the missed-slot policy")
    missed: int = Field(default=0, description="slots the policy let go unfired before it")
    target: dict[str, Any]
    task_id: uuid.UUID | None = None


class TaskDue(BaseModel):
    """A reminder of a task came due."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: uuid.UUID
    user_id: str | None = None
    title: str
    due_at: datetime | None = None
    remind_before_s: int
    schedule_id: uuid.UUID


class TaskCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    notes: str = Field(default="", max_length=100_000)
    user_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="whose task (keys name one)"
    )
    due_at: datetime | None = None
    status: TaskStatus = "open"
    priority: int = Field(default=0, ge=0, le=9)
    reminders: list[Annotated[int, Field(ge=0, le=366 * 86400)]] = Field(
        default_factory=list, max_length=10, description="seconds before due_at"
    )


class TaskUpdate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    notes: str | None = Field(default=None, max_length=100_000)
    due_at: datetime | None = None
    status: TaskStatus | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    reminders: list[Annotated[int, Field(ge=0, le=366 * 86400)]] | None = Field(
        default=None, max_length=10
    )


class TaskView(BaseModel):
    id: uuid.UUID
    user_id: str | None
    title: str
    notes: str
    due_at: datetime | None
    status: TaskStatus
    priority: int
    reminders: list[int]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class TaskList(IdPage[TaskView]):
    """GET /v1/tasks: newest first."""
