"""The `tasks` built-in tools: the job's user's tasks, made, completed and listed by the model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumers.groups.model_calls.ports import Ports
from consumers.groups.model_calls.tools import ToolResult, ToolRun
from infra.db import tasks as task_store
from infra.db.models import utcnow
from infra.db.schedule_models import Task
from infra.providers.base import Tool
from schemas import jobs as job_events


class _CreateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500, description="what is to be done")
    notes: str = Field(default="", max_length=100_000)
    due_at: datetime | None = Field(default=None, description="ISO 8601, with an offset")
    priority: int = Field(default=0, ge=0, le=9, description="0 (none) to 9 (highest)")
    reminders: list[Annotated[int, Field(ge=0, le=366 * 86400)]] = Field(
        default_factory=list, max_length=10, description="seconds before due_at to remind"
    )


class _CompleteTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID


class _ListTasks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "done"] | None = Field(default=None, description="only these")


_LIST_LIMIT = 50

_ARGUMENTS: dict[str, tuple[type[BaseModel], str]] = {
    "create_task": (_CreateTask, "Create a task for the user."),
    "complete_task": (_CompleteTask, "Mark one of the user's tasks done."),
    "list_tasks": (_ListTasks, f"The user's tasks, newest first (at most {_LIST_LIMIT})."),
}


class TaskTools:
    name = "tasks"

    async def schemas(self, job: job_events.ChatJob, ports: Ports) -> Sequence[Tool]:
        return [
            Tool(name, description, model.model_json_schema())
            for name, (model, description) in _ARGUMENTS.items()
        ]

    async def run(self, call: ToolRun) -> ToolResult:
        model, _ = _ARGUMENTS[call.call.name]
        try:
            arguments = model.model_validate_json(call.call.arguments or "{}")
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            return _answer({"error": "invalid_arguments", "details": problems}, ok=False)
        if isinstance(arguments, _CreateTask):
            return await _create(call, arguments)
        if isinstance(arguments, _CompleteTask):
            return await _complete(call, arguments)
        assert isinstance(arguments, _ListTasks)
        return await _list(call, arguments)


async def _create(call: ToolRun, arguments: _CreateTask) -> ToolResult:
    now = utcnow()
    task = Task(
        # Derived from the job, step and call: a step run again finds its task made.
        id=call.effect_id(),
        tenant_id=call.tenant_id,
        user_id=call.user_id,
        title=arguments.title,
        notes=arguments.notes,
        due_at=arguments.due_at,
        priority=arguments.priority,
        reminders=arguments.reminders,
        created_at=now,
        updated_at=now,
    )
    await task_store.add_task_once(call.ports.db, task)
    found = await task_store.get_task(call.ports.db, call.tenant_id, task.id, call.user_id)
    if found is None:  # deleted between the steps
        return _answer({"error": "not_found", "task_id": str(task.id)}, ok=False)
    return _answer({"task": _view(found)}, summary={"task_id": str(found.id)})


async def _complete(call: ToolRun, arguments: _CompleteTask) -> ToolResult:
    db = call.ports.db
    # Only the job's user's task: another's is not found.
    found = await task_store.get_task(db, call.tenant_id, arguments.task_id, call.user_id)
    if found is None:
        return _answer({"error": "not_found", "task_id": str(arguments.task_id)}, ok=False)
    if found.status != "done":  # completing twice changes nothing
        found = await task_store.update_task(
            db, call.tenant_id, found.id, {"status": "done", "completed_at": utcnow()}
        )
        if found is None:
            return _answer({"error": "not_found", "task_id": str(arguments.task_id)}, ok=False)
    return _answer({"task": _view(found)}, summary={"task_id": str(found.id)})


async def _list(call: ToolRun, arguments: _ListTasks) -> ToolResult:
    found = await task_store.list_tasks(
        call.ports.db, call.tenant_id, call.user_id, arguments.status, _LIST_LIMIT
    )
    return _answer({"tasks": [_view(t) for t in found]}, summary={"count": len(found)})


def _view(task: Task) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "title": task.title,
        "notes": task.notes,
        "status": task.status,
        "priority": task.priority,
        "due_at": task.due_at.isoformat() if task.due_at else None,
        "reminders": list(task.reminders),
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
    }


def _answer(
    content: dict[str, Any], *, summary: dict[str, Any] | None = None, ok: bool = True
) -> ToolResult:
    if not ok:
        summary = {"error": content["error"]}
    return ToolResult(orjson.dumps(content).decode(), summary or {}, ok)
