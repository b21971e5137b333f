"""Schedules: the API, and the scheduler firing each slot once on a clock the test moves."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from consumers.groups.scheduler.firing import fire_due
from consumers.groups.scheduler.group import handle_fired
from infra.db import jobs as job_store
from infra.db import schedules as store
from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.errors import PermanentError
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from infra.schedule_times import Timing, slot_id, zone
from schemas import schedules as schedule_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import derived_id
from schemas.sealing import sealed_part
from tests.conftest import make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic
from tests.scheduling import (
    Clock,
    add_schedule,
    fired_events,
    pause_every_schedule,
    scheduler_settings,
    schedulers,
)
from tests.sign_in import user_headers

pytestmark = pytest.mark.timeout(180)

T0 = datetime(2026, 6, 1, 8, 58, tzinfo=UTC)  # the schedules below start after it


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_cron_slot_fires_once_with_three_schedulers(
    services: ServiceAddresses, db: Database
) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    schedule = await add_schedule(db, tenant.tenant_id, T0, cron="0 9 * * *")
    slot = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert schedule.next_fire_at == slot
    clock = Clock(slot - timedelta(seconds=1))
    async with schedulers(settings, clock, copies=3) as copies:
        assert sum(await asyncio.gather(*(fire_due(c) for c in copies))) == 0
        clock.now = slot + timedelta(seconds=1)
        for _ in range(3):  # every copy ticks again and again across the slot
            await asyncio.gather(*(fire_due(c) for c in copies))
    events = await fired_events(settings, schedule.id)
    assert [e.id for e in events] == [slot_id(schedule.id, slot)]
    assert events[0].payload["late"] is False
    assert [s.slot_at for s in await store.fired_slots(db, schedule.id)] == [slot]
    after = await store.get_schedule(db, tenant.tenant_id, schedule.id)
    assert after is not None and after.next_fire_at == slot + timedelta(days=1)


@pytest.mark.parametrize(
    ("missed", "fired_slots", "late_missed"),
    [
        ("run_once", ["09:10"], [2]),
        ("skip", [], []),
        ("run_all", ["09:05", "09:10"], [1, 1]),
    ],
)
async def test_scheduler_down_across_slots_follows_the_missed_policy(
    services: ServiceAddresses,
    db: Database,
    missed: str,
    fired_slots: list[str],
    late_missed: list[int],
) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    schedule = await add_schedule(
        db, tenant.tenant_id, T0, cron="*/5 * * * *", missed=missed, missed_max=2
    )
    clock = Clock(datetime(2026, 6, 1, 8, 59, 30, tzinfo=UTC))
    async with schedulers(settings, clock) as (first,):
        assert await fire_due(first) == 0
    # The scheduler is down over 09:00, 09:05 and 09:10; a new one starts at 09:12.
    clock.now = datetime(2026, 6, 1, 9, 12, tzinfo=UTC)
    async with schedulers(settings, clock) as (restarted,):
        await fire_due(restarted)
        await fire_due(restarted)
    events = await fired_events(settings, schedule.id)
    assert [_utc(e.payload["slot_at"]).strftime("%H:%M") for e in events] == fired_slots
    assert all(e.payload["late"] for e in events)
    assert [e.payload["missed"] for e in events] == late_missed
    after = await store.get_schedule(db, tenant.tenant_id, schedule.id)
    assert after is not None and after.next_fire_at == datetime(2026, 6, 1, 9, 15, tzinfo=UTC)


class DiesAfterPublishing(Publisher):
    """A scheduler copy killed after its event went out, before its claim committed."""

    async def publish(self, topic: str, envelope: Envelope[Any], extra_headers: Any = None) -> None:
        await super().publish(topic, envelope, extra_headers)
        raise RuntimeError("killed")


async def test_scheduler_killed_between_publish_and_claim_republishes_the_same_slot(
    services: ServiceAddresses, db: Database
) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    schedule = await add_schedule(db, tenant.tenant_id, T0, cron="0 9 * * *")
    slot = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    clock = Clock(slot + timedelta(seconds=2))
    async with schedulers(settings, clock, publisher=DiesAfterPublishing) as (dying,):
        with pytest.raises(RuntimeError, match="killed"):
            await fire_due(dying)
    assert await store.fired_slots(db, schedule.id) == []  # the claim rolled back
    clock.now = slot + timedelta(minutes=5)  # restarted later, still within the grace
    async with schedulers(settings, clock, copies=2) as copies:
        await asyncio.gather(*(fire_due(c) for c in copies))
        await asyncio.gather(*(fire_due(c) for c in copies))
    events = await fired_events(settings, schedule.id)
    # Published twice, under one id: consumers keep the first (their ids derive from it).
    assert [e.id for e in events] == [slot_id(schedule.id, slot)] * 2
    assert len(await store.fired_slots(db, schedule.id)) == 1


def test_cron_in_berlin_skips_the_missing_0230_and_fires_the_repeated_0230_once() -> None:
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    spring = datetime(2026, 3, 27, 12, tzinfo=UTC)
    first = timing.next_after(spring)
    assert first is not None
    slots, _ = timing.slots(first, datetime(2026, 3, 31, tzinfo=UTC), 10)
    # 29 March 2026: 02:00 CET becomes 03:00 CEST; there is no 02:30 that day.
    assert (
        slots
        == [
            datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
            datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
            datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
        ][: len(slots)]
    )
    assert len(slots) == 2
    autumn = datetime(2026, 10, 24, 12, tzinfo=UTC)
    first = timing.next_after(autumn)
    assert first is not None
    slots, _ = timing.slots(first, datetime(2026, 10, 26, 12, tzinfo=UTC), 10)
    # 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 comes twice, fires once.
    assert slots == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]


async def test_scheduler_fires_berlin_slots_across_both_transitions(
    services: ServiceAddresses, db: Database
) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    schedule = await add_schedule(
        db, tenant.tenant_id, start, cron="30 2 * * *", timezone="Europe/Berlin"
    )
    clock = Clock(start)
    async with schedulers(settings, clock) as (scheduler,):
        while clock.now < start + timedelta(hours=6):  # every 15 minutes through the night
            clock.now += timedelta(minutes=15)
            await fire_due(scheduler)
    events = await fired_events(settings, schedule.id)
    assert [_utc(e.payload["slot_at"]) for e in events] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    ]
    assert not events[0].payload["late"]


async def admin_headers(db: Database) -> tuple[uuid.UUID, dict[str, str]]:
    tenant = await make_tenant(db, admin=True)
    return uuid.UUID(str(tenant.tenant_id)), tenant.headers


JOB = {"job": {"model": "local-echo", "prompt": "Summarise {{ slot_at }}"}}


async def test_schedule_changed_between_slots_fires_on_its_new_timing(
    services: ServiceAddresses, db: Database, client: httpx.AsyncClient
) -> None:
    settings = await scheduler_settings(services, db)
    tenant_id, headers = await admin_headers(db)
    created = await client.post(
        "/v1/schedules",
        json={"name": "daily", "cron": "0 9 * * *", "timezone": "Europe/Berlin", "target": JOB},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    old_next = _utc(body["next_fire_at"])
    assert old_next.astimezone(zone("Europe/Berlin")).hour == 9
    changed = await client.patch(
        f"/v1/schedules/{body['id']}", json={"cron": "30 10 * * *"}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    new_next = _utc(changed.json()["next_fire_at"])
    assert new_next.astimezone(zone("Europe/Berlin")).strftime("%H:%M") == "10:30"
    listed = await client.get("/v1/schedules", headers=headers)
    assert [(s["id"], s["next_fire_at"]) for s in listed.json()["data"]] == [
        (body["id"], changed.json()["next_fire_at"])
    ]
    clock = Clock(max(old_next, new_next) + timedelta(seconds=1))
    async with schedulers(settings, clock) as (scheduler,):
        await fire_due(scheduler)
    events = await fired_events(settings, uuid.UUID(body["id"]))
    assert [_utc(e.payload["slot_at"]) for e in events] == [new_next]
    assert tenant_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "0 9 * * * *"}, "cron"),
        ({"cron": "61 9 * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval_s": 0}, "interval_s"),
        ({"cron": "0 9 * * *", "interval_s": 60}, "cron"),
        ({"at": "2030-01-01T09:00:00"}, "at"),
        ({"at": "2020-01-01T09:00:00Z"}, "at"),
        ({"cron": "0 9 * * *", "missed": "sometimes"}, "missed"),
    ],
)
async def test_bad_timing_is_refused_naming_the_field(
    db: Database, client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    _, headers = await admin_headers(db)
    response = await client.post(
        "/v1/schedules", json={"name": "bad", "target": JOB, **body}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == field


async def test_schedule_pause_resume_delete(db: Database, client: httpx.AsyncClient) -> None:
    _, headers = await admin_headers(db)
    created = await client.post(
        "/v1/schedules", json={"name": "tick", "interval_s": 3600, "target": JOB}, headers=headers
    )
    assert created.status_code == 201, created.text
    url = f"/v1/schedules/{created.json()['id']}"
    paused = await client.post(f"{url}/pause", headers=headers)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    resumed = await client.post(f"{url}/resume", headers=headers)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert _utc(resumed.json()["next_fire_at"]) > datetime.now(UTC)
    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404


async def test_developer_key_may_not_create_schedules(
    db: Database, client: httpx.AsyncClient
) -> None:
    developer = await make_tenant(db)
    response = await client.post(
        "/v1/schedules",
        json={"name": "x", "interval_s": 60, "target": JOB},
        headers=developer.headers,
    )
    assert response.status_code == 403


async def test_fired_slot_starts_its_job_once(services: ServiceAddresses, db: Database) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    schedule = await add_schedule(db, tenant.tenant_id, T0, cron="0 9 * * *", target=JOB)
    slot = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    clock = Clock(slot)
    async with schedulers(settings, clock) as (scheduler,):
        assert await fire_due(scheduler) == 1
        (raw,) = await fired_events(settings, schedule.id)
        event = Envelope[schedule_events.ScheduleFired].model_validate(raw.model_dump())
        await handle_fired(event, scheduler)
        await handle_fired(event, scheduler)  # the same slot delivered again
    job_id = derived_id(event.id, f"schedule:{schedule.id}:job")
    found = await job_store.get_job(db, tenant.tenant_id, job_id)
    assert found is not None and found.job.published_at is not None
    assert found.job.request["messages"][-1]["content"] == f"Summarise {slot.isoformat()}"
    async with db.session() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM jobs WHERE tenant_id = :t"), {"t": tenant.tenant_id}
        )
    assert count == 1


async def test_a_developer_key_without_rules_write_may_not_change_tenant_schedules(
    db: Database, client: httpx.AsyncClient
) -> None:
    admin = await make_tenant(db, admin=True)
    _, plaintext = await create_api_key(db, admin.tenant_id, role="developer")
    developer = {"Authorization": f"Bearer {plaintext}"}
    body = {"name": "x", "interval_s": 60, "target": JOB}
    refused = await client.post("/v1/schedules", json=body, headers=developer)
    assert refused.status_code == 403, refused.text
    created = await client.post("/v1/schedules", json=body, headers=admin.headers)
    url = f"/v1/schedules/{created.json()['id']}"
    assert (await client.get(url, headers=developer)).status_code == 200  # reading is not
    assert (await client.post(f"{url}/pause", headers=developer)).status_code == 403
    assert (await client.delete(url, headers=developer)).status_code == 403


async def test_a_signed_in_user_owns_the_schedules_they_make(
    db: Database, client: httpx.AsyncClient
) -> None:
    admin = await make_tenant(db, admin=True)
    alice_id = unique("alice-")
    alice = await user_headers(client, admin, alice_id)
    bob = await user_headers(client, admin, unique("bob-"))
    body = {"name": "mine", "interval_s": 600, "target": JOB}
    created = await client.post("/v1/schedules", json=body, headers=alice)
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == alice_id
    url = f"/v1/schedules/{created.json()['id']}"
    assert (await client.get(url, headers=bob)).status_code == 404
    assert (await client.get("/v1/schedules", headers=bob)).json()["data"] == []
    assert (await client.post(f"{url}/pause", headers=bob)).status_code == 404
    assert (await client.post(f"{url}/pause", headers=alice)).json()["paused"] is True
    tenant_wide = await client.get("/v1/schedules", headers=admin.headers)
    assert [s["id"] for s in tenant_wide.json()["data"]] == [created.json()["id"]]


@pytest.mark.timeout(300)  # three worker processes start
async def test_three_scheduler_workers_fire_a_slot_once_and_start_its_job(
    services: ServiceAddresses, fake_llm: FakeLLMServer, db: Database, tmp_path: Path
) -> None:
    platform, settings = new_platform(services, fake_llm, tmp_path / "logs")
    await pause_every_schedule(db)
    tenant = await make_tenant(db, admin=True)
    slot = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    clock = tmp_path / "clock"
    clock.write_text((slot - timedelta(minutes=1)).isoformat())
    schedule = await add_schedule(db, tenant.tenant_id, T0, cron="0 9 * * *", target=JOB)
    other = await add_schedule(db, tenant.tenant_id, T0, cron="0 10 * * *", target=JOB)
    env = {"AYUSH_SCHEDULER_CLOCK_FILE": str(clock), "AYUSH_SCHEDULER_TICK_S": "0.1"}
    try:
        for _ in range(3):
            platform.start_worker("scheduler", env)
        clock.write_text((slot + timedelta(seconds=1)).isoformat())
        job_id = derived_id(slot_id(schedule.id, slot), f"schedule:{schedule.id}:job")

        async def started() -> bool:
            found = await job_store.get_job(db, tenant.tenant_id, job_id)
            return found is not None and found.job.published_at is not None

        await eventually(started, 60, "the slot's job")
        # The copies tick on past the slot (another schedule's 10:00 slot fires) …
        clock.write_text((slot + timedelta(hours=1, seconds=1)).isoformat())
        other_slot = slot + timedelta(hours=1)
        other_job = derived_id(slot_id(other.id, other_slot), f"schedule:{other.id}:job")

        async def other_started() -> bool:
            return await job_store.get_job(db, tenant.tenant_id, other_job) is not None

        await eventually(other_started, 60, "the later slot's job")
    finally:
        platform.stop()
    assert [e.id for e in await fired_events(settings, schedule.id)] == [slot_id(schedule.id, slot)]
    assert len(await store.fired_slots(db, schedule.id)) == 1
    async with db.session() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM jobs WHERE tenant_id = :t"), {"t": tenant.tenant_id}
        )
    assert count == 2  # … and the 09:00 slot's job is still the only one of its schedule


async def test_a_users_scheduled_job_runs_and_is_billed_as_that_user(
    services: ServiceAddresses, db: Database
) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    alice_id = unique("alice-")
    schedule = await add_schedule(
        db, tenant.tenant_id, T0, cron="0 9 * * *", target=JOB, user_id=alice_id
    )
    slot = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    async with schedulers(settings, Clock(slot)) as (scheduler,):
        await fire_due(scheduler)
        (raw,) = await fired_events(settings, schedule.id)
        event = Envelope[schedule_events.ScheduleFired].model_validate(raw.model_dump())
        await handle_fired(event, scheduler)
    found = await job_store.get_job(
        db, tenant.tenant_id, derived_id(event.id, f"schedule:{schedule.id}:job")
    )
    assert found is not None
    assert (found.job.user_id, found.job.request["user_id"]) == (alice_id, alice_id)
    # A user's slot carries their prompt: it is sealed with their data key on the topic.
    (record,) = await read_topic(settings, topics.SCHEDULE_EVENTS.name, raw=True)
    assert sealed_part(decode_raw(record.value).payload) is not None


def test_interval_slots_after_a_long_outage_are_counted_not_walked() -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    timing = Timing(interval_s=1, anchor=start)
    first = timing.next_after(start)
    assert first == start + timedelta(seconds=1)
    week = start + timedelta(days=7)
    slots, count = timing.slots(first, week, 3)
    assert count == 7 * 86400
    assert slots == [week - timedelta(seconds=2), week - timedelta(seconds=1), week]
    walked = Timing(cron="* * * * *").slots(datetime(2026, 6, 1, 0, 1, tzinfo=UTC), week, 2)
    assert walked == ([week - timedelta(minutes=1), week], 7 * 1440)


class RefusesOneSchedule(Publisher):
    """Kafka refuses the events of one schedule (`refused`), permanently."""

    refused: uuid.UUID | None = None

    async def publish(self, topic: str, envelope: Envelope[Any], extra_headers: Any = None) -> None:
        if envelope.correlation_id == self.refused:
            raise PermanentError("refused")
        await super().publish(topic, envelope, extra_headers)


async def test_a_schedule_that_cannot_fire_does_not_hold_back_the_others(
    services: ServiceAddresses, db: Database
) -> None:
    settings = await scheduler_settings(services, db)
    tenant = await make_tenant(db, admin=True)
    # Due first, so the pass meets it before the healthy one.
    broken = await add_schedule(db, tenant.tenant_id, T0, cron="59 8 * * *")
    healthy = await add_schedule(db, tenant.tenant_id, T0, cron="0 9 * * *")
    RefusesOneSchedule.refused = broken.id
    clock = Clock(datetime(2026, 6, 1, 9, 0, 5, tzinfo=UTC))
    async with schedulers(settings, clock, publisher=RefusesOneSchedule) as (scheduler,):
        assert await fire_due(scheduler) == 1
    assert len(await fired_events(settings, healthy.id)) == 1
    assert await store.fired_slots(db, broken.id) == []
    left = await store.get_schedule(db, tenant.tenant_id, broken.id)
    assert left is not None and left.next_fire_at == datetime(2026, 6, 1, 8, 59, tzinfo=UTC)


async def test_schedules_and_tasks_list_a_page_at_a_time(
    db: Database, client: httpx.AsyncClient
) -> None:
    """Schedules oldest first and tasks newest first, `limit` at a time, each page going on
    `after` the last id of the one before."""
    admin = await make_tenant(db, admin=True)
    made = []
    for n in range(5):
        created = await client.post(
            "/v1/schedules",
            json={"name": f"s{n}", "interval_s": 3600, "target": JOB},
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = (await client.get("/v1/schedules", params=params, headers=admin.headers)).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [s["id"] for s in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == made
    too_many = await client.get("/v1/schedules", params={"limit": 0}, headers=admin.headers)
    assert too_many.status_code == 422 and too_many.json()["details"][0]["field"] == "limit"

    user = unique("pager-")
    tasks = []
    for n in range(3):
        created = await client.post(
            "/v1/tasks", json={"title": f"t{n}", "user_id": user}, headers=admin.headers
        )
        assert created.status_code == 201, created.text
        tasks.append(created.json()["id"])
    first = (
        await client.get("/v1/tasks", params={"user_id": user, "limit": 2}, headers=admin.headers)
    ).json()
    assert [t["id"] for t in first["data"]] == tasks[:0:-1] and first["has_more"]
    rest = (
        await client.get(
            "/v1/tasks",
            params={"user_id": user, "limit": 2, "after": first["last_id"]},
            headers=admin.headers,
        )
    ).json()
    assert [t["id"] for t in rest["data"]] == [tasks[0]] and not rest["has_more"]
