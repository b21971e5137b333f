"""The scheduler group: fires due slots on a timer, and runs what each fired slot asks.

    tick (every scheduler_tick_s) -> fire_due           (firing.py)
    schedule.fired                -> handle_fired       the target's job and/or action,
                                                        or a task's `task.due`
    ai.job.succeeded              -> handle_job_succeeded  the action a job's answer feeds

Any number of copies may run: each slot fires once (firing.py). A fired slot's event
may still arrive twice (a copy that died before its claim committed): every job,
action and event it leads to has an id derived from the slot's, so the second is
dropped downstream, as the webhook router's are.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from consumers.groups.scheduler.firing import GROUP, SYSTEM, Ports, clock_of, fire_due
from consumers.groups.webhook_router import routing
from consumers.groups.webhook_router.templates import render
from infra.db import jobs as job_store
from infra.db import schedules as store
from infra.db import tasks as task_store
from infra.db.models import Job, utcnow
from infra.db.schedule_models import ScheduleRun
from infra.kafka.group import Group
from infra.kafka.policies import Each
from infra.now_and_then import AtMostEvery
from schemas import jobs as job_events
from schemas import schedules as schedule_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.versions import follow_up

__all__ = ["Ports", "clock_of", "group"]

log = logging.getLogger(__name__)

group: Group[Ports] = Group(
    GROUP, [topics.SCHEDULE_EVENTS.name, topics.AI_JOB_LIFECYCLE.name], lambda settings: Each(16)
)


# Claims of slots fired longer ago than `schedule_slot_keep_days` go, once an hour.
_prune = AtMostEvery(3600.0)


@group.every(lambda settings: settings.scheduler_tick_s)
async def tick(ports: Ports) -> None:
    await fire_due(ports)
    if _prune.due():
        keep = timedelta(days=ports.settings.schedule_slot_keep_days)
        # Slots are fired on the scheduler's clock (a set one, in tests): older than the
        # keep on it and on the system's.
        pruned = await store.prune_slots(ports.db, min(ports.clock(), utcnow()) - keep)
        if pruned:
            log.info("scheduler: %d fired slots' claims pruned", pruned)


@group.on(schedule_events.SCHEDULE_FIRED, schedule_events.ScheduleFired)
async def handle_fired(raw: Envelope[schedule_events.ScheduleFired], ports: Ports) -> None:
    fired = raw.payload
    if fired.task_id is not None:
        await _remind(raw, ports)
        return
    purpose = f"schedule:{fired.schedule_id}"
    context: dict[str, Any] = {
        "schedule": {"id": str(fired.schedule_id), "name": fired.name},
        "slot_at": fired.slot_at.isoformat(),
        "fired_at": fired.fired_at.isoformat(),
        "late": fired.late,
    }
    target = schedule_events.ScheduleTarget.model_validate(fired.target)
    action = target.action.model_dump(mode="json") if target.action else None
    if target.job is not None:
        metadata = {"schedule_id": str(fired.schedule_id), "slot_id": str(raw.id)}

        async def wait_for_answer(stored: Job) -> None:
            if action is None:
                return
            run = ScheduleRun(
                job_id=stored.id,
                tenant_id=raw.tenant_id,
                schedule_id=fired.schedule_id,
                slot_id=raw.id,
                context=context,
                action=action,
            )
            await store.save_run(ports.db, run)

        await routing.start_job(
            raw,
            purpose,
            target.job,
            context,
            metadata,
            ports.router,
            wait_for_answer,
            user_id=fired.user_id,
        )
    elif action is not None:
        params = render(action["params"], context)
        await routing.request_action(raw, raw.tenant_id, action, params, purpose, ports.router)


@group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded)
async def handle_job_succeeded(raw: Envelope[job_events.JobSucceeded], ports: Ports) -> None:
    run = await store.get_run(ports.db, raw.payload.job_id)
    if run is None:
        return  # not a job a schedule is waiting on
    found = await job_store.get_job(ports.db, run.tenant_id, run.job_id)
    if found is None or found.result is None:
        log.warning("job %s succeeded but has no stored result", run.job_id)
        return
    context = {**run.context, "result": found.result.text}
    params = render(run.action["params"], context)
    purpose = f"schedule:{run.schedule_id}"
    await routing.request_action(raw, run.tenant_id, run.action, params, purpose, ports.router)


async def _remind(raw: Envelope[schedule_events.ScheduleFired], ports: Ports) -> None:
    """A task's reminder: `task.due`, unless the task is done or gone."""
    fired = raw.payload
    assert fired.task_id is not None
    task = await task_store.get_task(ports.db, raw.tenant_id, fired.task_id)
    if task is None or task.status == "done":
        return
    before = int(fired.target.get("remind_before_s", 0))
    due = schedule_events.TaskDue(
        task_id=task.id,
        user_id=task.user_id,
        title=task.title,
        due_at=task.due_at,
        remind_before_s=before,
        schedule_id=fired.schedule_id,
    )
    event = follow_up(raw, schedule_events.TASK_DUE, due, "task.due", SYSTEM)
    await ports.publisher.publish(topics.SCHEDULE_EVENTS.name, event)
