"""/v1/tasks: a user's tasks. A signed-in user sees and changes their own only; a key
names the user (`user_id`). Each reminder offset (seconds before `due_at`) is a one-shot
schedule that publishes `task.due` when it comes (infra/db/tasks.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from infra.db import tasks as store
from infra.db.models import utcnow
from infra.db.schedule_models import Task
from producers.ingress.actions import invalid
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.scope import acting_user
from producers.ingress.state import Services, Svc
from schemas import schedules as api
from schemas.ids import uuid7

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


def _view(task: Task) -> api.TaskView:
    return api.TaskView.model_validate(task, from_attributes=True)


async def _owned(svc: Services, caller: Caller, task_id: uuid.UUID) -> Task:
    found = await store.get_task(svc.db, caller.tenant_id, task_id, caller.own_user)
    if found is None:
        raise ApiError(404, "not_found", "no such task")
    return found


@router.post("", status_code=201, response_model=api.TaskView)
async def create_task(
    body: Annotated[api.TaskCreate, Depends(json_body(api.TaskCreate))],
    caller: Authenticated,
    svc: Svc,
) -> api.TaskView:
    if body.due_at is not None and body.due_at.tzinfo is None:
        raise invalid("due_at", "give a time with its offset (…Z or …+02:00)")
    now = utcnow()
    task = Task(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        user_id=acting_user(caller, body.user_id),
        title=body.title,
        notes=body.notes,
        due_at=body.due_at,
        status=body.status,
        priority=body.priority,
        reminders=list(body.reminders),
        created_at=now,
        updated_at=now,
        completed_at=now if body.status == "done" else None,
    )
    await store.add_task(svc.db, task)
    return _view(task)


@router.get("", response_model=api.TaskList)
async def list_tasks(
    caller: Authenticated,
    svc: Svc,
    user_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    status: Annotated[api.TaskStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[uuid.UUID | None, Query(description="the last id of the page before")] = None,
) -> api.TaskList:
    """Newest first, `limit` at a time; the next page starts `after` the last id."""
    user = acting_user(caller, user_id)
    found = await store.list_tasks(svc.db, caller.tenant_id, user, status, limit + 1, after)
    return api.TaskList.page([_view(t) for t in found], limit)


@router.get("/{task_id}", response_model=api.TaskView)
async def get_task(task_id: uuid.UUID, caller: Authenticated, svc: Svc) -> api.TaskView:
    return _view(await _owned(svc, caller, task_id))


@router.patch("/{task_id}", response_model=api.TaskView)
async def update_task(
    task_id: uuid.UUID,
    body: Annotated[api.TaskUpdate, Depends(json_body(api.TaskUpdate))],
    caller: Authenticated,
    svc: Svc,
) -> api.TaskView:
    found = await _owned(svc, caller, task_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("title", "notes", "status", "priority", "reminders"):
        if name in changes and changes[name] is None:
            raise invalid(name, "may not be null")
    if body.due_at is not None and body.due_at.tzinfo is None:
        raise invalid("due_at", "give a time with its offset (…Z or …+02:00)")
    if "status" in changes and changes["status"] != found.status:
        changes["completed_at"] = utcnow() if changes["status"] == "done" else None
    updated = await store.update_task(svc.db, caller.tenant_id, task_id, changes)
    if updated is None:
        raise ApiError(404, "not_found", "no such task")
    return _view(updated)


@router.delete("/{task_id}", status_code=204)
async def delete_task(task_id: uuid.UUID, caller: Authenticated, svc: Svc) -> Response:
    await _owned(svc, caller, task_id)
    await store.delete_task(svc.db, caller.tenant_id, task_id)
    return Response(status_code=204)
