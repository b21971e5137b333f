"""Scheduler copies in the test's process, on a clock the test moves."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import text

from ayush.groups import GROUPS
from consumers.groups.scheduler.group import Ports
from infra.db import schedules as store
from infra.db.engine import Database
from infra.db.schedule_models import Schedule
from infra.kafka.admin import create_topics
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from infra.schedule_times import Timing
from infra.settings import Settings
from schemas import topics
from schemas.envelope import RawEnvelope
from schemas.ids import uuid7
from tests.conftest import namespace_settings
from tests.harness import unique
from tests.kafka_tools import read_topic


@dataclasses.dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


async def scheduler_settings(services: ServiceAddresses, db: Database) -> Settings:
    """A namespace of the test's own, and every schedule already in the database (other
    tests') paused: the test's scheduler fires only what the test makes."""
    settings = namespace_settings(services, unique("sched") + ".")
    await create_topics(settings)
    await pause_every_schedule(db)
    return settings


async def pause_every_schedule(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("UPDATE schedules SET paused = true WHERE NOT paused"))


@asynccontextmanager
async def schedulers(
    settings: Settings, clock: Clock, copies: int = 1, publisher: type[Publisher] = Publisher
) -> AsyncIterator[list[Ports]]:
    """`copies` scheduler groups' ports, as the worker builds them, each with its own
    database pool and Kafka producer, on the test's clock."""
    build = GROUPS["scheduler"].build
    assert build is not None
    async with AsyncExitStack() as stack:
        made = []
        for _ in range(copies):
            producer = publisher(settings)
            await producer.start()
            stack.push_async_callback(producer.stop)
            ports = await build(settings, producer, stack)
            made.append(dataclasses.replace(ports, clock=clock))
        yield made


async def add_schedule(db: Database, tenant_id: Any, after: datetime, **fields: Any) -> Schedule:
    """A schedule of the tenant's whose first slot is the first after `after`."""
    fields.setdefault("target", {"job": {"model": "local-echo", "prompt": "hi"}})
    schedule = Schedule(
        id=uuid7(), tenant_id=tenant_id, name=unique("s-"), created_at=after, **fields
    )
    timing = Timing(
        cron=schedule.cron,
        timezone=schedule.timezone,
        interval_s=schedule.interval_s,
        anchor=after,
        at=schedule.at,
    )
    schedule.next_fire_at = timing.next_after(after)
    await store.add_schedule(db, schedule)
    return schedule


async def fired_events(settings: Settings, schedule_id: uuid.UUID) -> list[RawEnvelope]:
    """Every `schedule.fired` record of the schedule now in the topic (duplicates kept)."""
    records = await read_topic(settings, topics.SCHEDULE_EVENTS.name)
    events = [decode_raw(record.value) for record in records]
    return [
        e
        for e in events
        if e.type == "schedule.fired" and e.payload["schedule_id"] == str(schedule_id)
    ]
