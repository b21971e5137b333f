"""Firing due slots, each exactly once, whatever the number of scheduler copies.

A tick takes the schedules whose `next_fire_at` has come, each row locked (another
copy skips it), and for every slot to fire: claims it (a `schedule_slots` row whose
id is uuid5 of schedule and slot time; ON CONFLICT DO NOTHING), publishes
`schedule.fired` under that same id, moves the schedule to its next slot, and
commits. A copy that dies after publishing and before committing leaves no claim:
the next tick publishes the same event id again, and its consumers drop the
duplicate (they derive every id from the event's). A committed claim is never
published again. A schedule that cannot fire now (its user's data key does not open,
Kafka refuses) is undone alone and stays due; the others fire.

Slots older than the grace (`scheduler_grace_s`) when found were missed while no
scheduler ran: `skip` drops them, `run_once` fires the latest of them, late, and
`run_all` fires the latest `missed_max` of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.groups.webhook_router import routing
from infra.db import schedules as store
from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.schedule_models import Schedule, ScheduleSlot
from infra.errors import PermanentError, TransientError
from infra.kafka.publisher import Publisher
from infra.schedule_times import Timing, slot_id
from infra.settings import Settings
from schemas import schedules as schedule_events
from schemas import topics
from schemas.envelope import Actor, Envelope

log = logging.getLogger(__name__)

GROUP = "scheduler"
SYSTEM = Actor(kind="system", id=GROUP)
# Schedules one transaction locks and fires.
DUE_PER_PASS = 100
# On-time slots one tick fires of one schedule (a 1 s interval within a minute's grace).
ON_TIME_MAX = 1000

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    publisher: Publisher
    clock: Clock
    # What a fired slot runs: the webhook router's jobs and actions, with their admission.
    router: routing.Ports


def clock_of(settings: Settings) -> Clock:
    """The time now: the clock file's when the settings name one, else the system's."""
    path = settings.scheduler_clock_file
    if path is None:
        return utcnow
    return lambda: read_clock(path)


def read_clock(path: Path) -> datetime:
    at = datetime.fromisoformat(path.read_text().strip())
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def timing_of(schedule: Schedule) -> Timing:
    return Timing(
        cron=schedule.cron,
        timezone=schedule.timezone,
        interval_s=schedule.interval_s,
        anchor=schedule.created_at,
        at=schedule.at,
    )


async def fire_due(ports: Ports) -> int:
    """Fire every due slot (by the clock); how many slots this copy fired."""
    now = ports.clock()
    fired = 0
    while True:
        failed = 0
        async with store.due_slots(ports.db, now, DUE_PER_PASS) as due:
            for schedule in due.schedules:
                try:
                    async with due.each():
                        fired += await _fire(schedule, now, due, ports)
                except (TransientError, PermanentError) as exc:
                    # Left due (its claims undone): the next tick tries it again.
                    failed += 1
                    log.warning("schedule %s did not fire: %s", schedule.id, exc)
        if len(due.schedules) < DUE_PER_PASS or failed == len(due.schedules):
            return fired


async def _fire(schedule: Schedule, now: datetime, due: store.DueSlots, ports: Ports) -> int:
    assert schedule.next_fire_at is not None
    timing = timing_of(schedule)
    grace = now - timedelta(seconds=ports.settings.scheduler_grace_s)
    keep = schedule.missed_max if schedule.missed == "run_all" else 1
    if schedule.next_fire_at > grace:
        missed: list[datetime] = []
        missed_count = 0
        first_on_time: datetime | None = schedule.next_fire_at
    else:
        missed, missed_count = timing.slots(schedule.next_fire_at, grace, keep)
        first_on_time = timing.next_after(grace)
    if schedule.missed == "skip":
        missed = []
    # Each late slot says how many missed slots the policy let go before it.
    late = {slot: missed_count - len(missed) for slot in missed}
    on_time: list[datetime] = []
    if first_on_time is not None:
        on_time, _ = timing.slots(first_on_time, now, ON_TIME_MAX)
    fired = 0
    for slot in [*missed, *on_time]:
        event = fired_event(schedule, slot, now, slot in late, late.get(slot, 0))
        if await due.claim(
            ScheduleSlot(
                id=event.id,
                tenant_id=schedule.tenant_id,
                schedule_id=schedule.id,
                slot_at=slot,
                fired_at=now,
                late=slot in late,
            )
        ):
            # Published before the claim commits: a crash now re-publishes the same id.
            await ports.publisher.publish(topics.SCHEDULE_EVENTS.name, event)
            fired += 1
    if missed_count and not missed:
        log.info("schedule %s: %d missed slots skipped", schedule.id, missed_count)
    await due.advance(schedule, timing.next_after(now), now if fired else None)
    return fired


def fired_event(
    schedule: Schedule, slot: datetime, now: datetime, late: bool, missed: int
) -> Envelope[schedule_events.ScheduleFired]:
    return Envelope[schedule_events.ScheduleFired](
        id=slot_id(schedule.id, slot),
        type=schedule_events.SCHEDULE_FIRED,
        tenant_id=schedule.tenant_id,
        actor=SYSTEM,
        correlation_id=schedule.id,
        occurred_at=now,
        payload=schedule_events.ScheduleFired(
            schedule_id=schedule.id,
            name=schedule.name,
            user_id=schedule.user_id,
            slot_at=slot,
            fired_at=now,
            late=late,
            missed=missed,
            target=schedule.target,
            task_id=schedule.task_id,
        ),
    )
