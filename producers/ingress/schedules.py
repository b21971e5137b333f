"""/v1/schedules: what runs at a time (cron in a zone, an interval, one time).

A schedule belongs to the tenant (made with a key: the tenant's administration, as
rules are, so the key must also hold `rules:write`) or to the signed-in user who made
it, who alone sees and changes it.
Its target is what a rule runs (an AI job, an action, or both: the job's answer
feeds the action); the scheduler group fires it (consumers/groups/scheduler).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from infra.db import schedules as store
from infra.db.models import utcnow
from infra.db.schedule_models import Schedule
from infra.schedule_times import InvalidTiming, Timing, check_cron, zone
from producers.ingress.access import may
from producers.ingress.actions import invalid
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.state import Services, Svc
from producers.ingress.webhook_setup import check_templates
from schemas import schedules as api
from schemas.ids import uuid7

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

TIMING = ("cron", "interval_s", "at")
FIELDS = (*TIMING, "timezone")
# What a key needs to change the tenant's schedules (besides schedules:write).
ADMINISTERS = "rules:write"


def _timing(values: dict[str, Any], anchor: datetime) -> Timing:
    """The schedule's timing, checked: exactly one of cron, interval_s, at (422 naming
    the field at fault otherwise)."""
    given = [name for name in TIMING if values.get(name) is not None]
    if len(given) != 1:
        raise invalid("cron", "give exactly one of cron, interval_s or at")
    try:
        zone(values.get("timezone") or "UTC")
        if values.get("cron") is not None:
            check_cron(values["cron"])
    except InvalidTiming as exc:
        raise invalid(exc.field, str(exc)) from exc
    at = values.get("at")
    if at is not None and at.tzinfo is None:
        raise invalid("at", "give a time with its offset (…Z or …+02:00)")
    if at is not None and at <= utcnow():
        raise invalid("at", "the time has passed")
    return Timing(
        cron=values.get("cron"),
        timezone=values.get("timezone") or "UTC",
        interval_s=values.get("interval_s"),
        anchor=anchor,
        at=at,
    )


def _view(schedule: Schedule) -> api.ScheduleView:
    return api.ScheduleView.model_validate(schedule, from_attributes=True)


def _may_change(caller: Caller) -> None:
    """A key changes the tenant's schedules, which run billed work unattended: the
    tenant's administration, as rules are. A signed-in user changes their own."""
    if caller.own_user is None and not may(caller.role, caller.scopes, ADMINISTERS):
        raise ApiError(
            403,
            "forbidden",
            f"the tenant's schedules are its administration: the key needs {ADMINISTERS}",
        )


async def _owned(
    svc: Services, caller: Caller, schedule_id: uuid.UUID, change: bool = False
) -> Schedule:
    found = await store.get_schedule(svc.db, caller.tenant_id, schedule_id, caller.own_user)
    if found is None or found.task_id is not None:
        raise ApiError(404, "not_found", "no such schedule")
    if change:
        _may_change(caller)
    return found


@router.post("", status_code=201, response_model=api.ScheduleView)
async def create_schedule(
    body: Annotated[api.ScheduleCreate, Depends(json_body(api.ScheduleCreate))],
    caller: Authenticated,
    svc: Svc,
) -> api.ScheduleView:
    _may_change(caller)
    now = utcnow()
    timing = _timing(body.model_dump(), now)
    await check_templates(svc, caller.tenant_id, body.target.job, body.target.action, "target.")
    schedule = Schedule(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        user_id=caller.own_user,
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        interval_s=body.interval_s,
        at=body.at,
        target=body.target.model_dump(mode="json", exclude_none=True),
        missed=body.missed,
        missed_max=body.missed_max,
        paused=body.paused,
        next_fire_at=timing.next_after(now),
        created_at=now,
        updated_at=now,
    )
    await store.add_schedule(svc.db, schedule)
    return _view(schedule)


@router.get("", response_model=api.ScheduleList)
async def list_schedules(
    caller: Authenticated,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[uuid.UUID | None, Query(description="the last id of the page before")] = None,
) -> api.ScheduleList:
    """Oldest first, `limit` at a time; the next page starts `after` the last id."""
    found = await store.list_schedules(
        svc.db, caller.tenant_id, caller.own_user, limit=limit + 1, after=after
    )
    return api.ScheduleList.page([_view(s) for s in found], limit)


@router.get("/{schedule_id}", response_model=api.ScheduleView)
async def get_schedule(schedule_id: uuid.UUID, caller: Authenticated, svc: Svc) -> api.ScheduleView:
    return _view(await _owned(svc, caller, schedule_id))


@router.patch("/{schedule_id}", response_model=api.ScheduleView)
async def update_schedule(
    schedule_id: uuid.UUID,
    body: Annotated[api.ScheduleUpdate, Depends(json_body(api.ScheduleUpdate))],
    caller: Authenticated,
    svc: Svc,
) -> api.ScheduleView:
    found = await _owned(svc, caller, schedule_id, change=True)
    changes = body.model_dump(exclude_unset=True)
    if "target" in changes and body.target is None:
        raise invalid("target", "a schedule needs a target")
    if body.target is not None:
        await check_templates(svc, caller.tenant_id, body.target.job, body.target.action, "target.")
        changes["target"] = body.target.model_dump(mode="json", exclude_none=True)
    for flag in ("name", "missed", "missed_max", "paused", "timezone"):
        if flag in changes and changes[flag] is None:
            raise invalid(flag, "may not be null")
    values = {**found.model_dump(include=set(FIELDS)), **changes}
    if set(TIMING) & changes.keys():
        # New timing replaces the old: the fields not given are cleared.
        for name in TIMING:
            values[name] = changes.get(name)
    now = utcnow()
    timing = _timing(values, found.created_at)
    # The next slot follows the new timing from now on; slots fired stay fired.
    changes.update({name: values[name] for name in FIELDS})
    changes["next_fire_at"] = timing.next_after(max(now, found.last_fired_at or now))
    updated = await store.update_schedule(svc.db, caller.tenant_id, schedule_id, changes)
    if updated is None:
        raise ApiError(404, "not_found", "no such schedule")
    return _view(updated)


@router.delete("/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: uuid.UUID, caller: Authenticated, svc: Svc) -> Response:
    await _owned(svc, caller, schedule_id, change=True)
    await store.delete_schedule(svc.db, caller.tenant_id, schedule_id)
    return Response(status_code=204)


@router.post("/{schedule_id}/pause", response_model=api.ScheduleView)
async def pause_schedule(
    schedule_id: uuid.UUID, caller: Authenticated, svc: Svc
) -> api.ScheduleView:
    await _owned(svc, caller, schedule_id, change=True)
    updated = await store.update_schedule(svc.db, caller.tenant_id, schedule_id, {"paused": True})
    assert updated is not None
    return _view(updated)


@router.post("/{schedule_id}/resume", response_model=api.ScheduleView)
async def resume_schedule(
    schedule_id: uuid.UUID, caller: Authenticated, svc: Svc
) -> api.ScheduleView:
    """Resume from now: the slots that passed while paused are not fired."""
    found = await _owned(svc, caller, schedule_id, change=True)
    timing = _timing(
        found.model_dump(include={"cron", "timezone", "interval_s", "at"}), found.created_at
    )
    values = {"paused": False, "next_fire_at": timing.next_after(datetime.now(UTC))}
    updated = await store.update_schedule(svc.db, caller.tenant_id, schedule_id, values)
    assert updated is not None
    return _view(updated)
