"""Tasks: a user's own, over /v1/tasks; each reminder a one-shot schedule firing `task.due`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from consumers.groups.scheduler.firing import fire_due
from consumers.groups.scheduler.group import handle_fired
from infra.db import tasks as task_store
from infra.db.engine import Database
from infra.db.user_data import erase_user
from infra.kafka.codec import decode_raw
from infra.local_stack import ServiceAddresses
from schemas import schedules as schedule_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import uuid7
from tests.conftest import make_tenant
from tests.harness import ROOT, unique
from tests.kafka_tools import read_topic
from tests.scheduling import Clock, fired_events, scheduler_settings, schedulers
from tests.sign_in import user_headers

pytestmark = pytest.mark.timeout(180)


async def test_tasks_crud_is_scoped_to_the_user(db: Database, client: httpx.AsyncClient) -> None:
    admin = await make_tenant(db, admin=True)
    alice_id = unique("alice-")
    alice = await user_headers(client, admin, alice_id)
    bob = await user_headers(client, admin, unique("bob-"))
    due = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    created = await client.post(
        "/v1/tasks",
        json={"title": "File taxes", "due_at": due.isoformat(), "priority": 2, "reminders": [3600]},
        headers=alice,
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["user_id"], task["status"], task["reminders"]) == (alice_id, "open", [3600])
    url = f"/v1/tasks/{task['id']}"
    assert (await client.get(url, headers=bob)).status_code == 404
    assert (await client.get("/v1/tasks", headers=bob)).json()["data"] == []
    assert [t["id"] for t in (await client.get("/v1/tasks", headers=alice)).json()["data"]] == [
        task["id"]
    ]
    # A key names the user whose tasks it reads.
    listed = await client.get("/v1/tasks", params={"user_id": alice_id}, headers=admin.headers)
    assert [t["id"] for t in listed.json()["data"]] == [task["id"]]
    done = await client.patch(url, json={"status": "done"}, headers=alice)
    assert done.status_code == 200 and done.json()["completed_at"] is not None
    # A done task reminds nobody: its reminder schedules are gone.
    assert await task_store.reminders_of(db, uuid.UUID(task["id"])) == []
    assert (await client.patch(url, json={"title": "x"}, headers=bob)).status_code == 404
    assert (await client.delete(url, headers=bob)).status_code == 404
    assert (await client.delete(url, headers=alice)).status_code == 204
    assert (await client.get(url, headers=alice)).status_code == 404


async def test_task_validation_names_the_field(db: Database, client: httpx.AsyncClient) -> None:
    admin = await make_tenant(db, admin=True)
    missing_user = await client.post("/v1/tasks", json={"title": "t"}, headers=admin.headers)
    assert missing_user.status_code == 422
    assert missing_user.json()["details"][0]["field"] == "user_id"
    negative = await client.post(
        "/v1/tasks", json={"title": "t", "user_id": "u", "reminders": [-5]}, headers=admin.headers
    )
    assert negative.status_code == 422, negative.text


async def test_task_reminder_fires_task_due_once(
    services: ServiceAddresses, db: Database, client: httpx.AsyncClient
) -> None:
    settings = await scheduler_settings(services, db)
    admin = await make_tenant(db, admin=True)
    due = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    created = await client.post(
        "/v1/tasks",
        json={"title": "Call Ana", "user_id": "ana", "due_at": due.isoformat(),
              "reminders": [600, 3600]},
        headers=admin.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    task_id = uuid.UUID(created.json()["id"])
    reminders = await task_store.reminders_of(db, task_id)
    assert [r.at for r in reminders] == [
        due - timedelta(seconds=3600),
        due - timedelta(seconds=600),
    ]
    first = reminders[0]
    clock = Clock(due - timedelta(seconds=3600) + timedelta(seconds=1))
    async with schedulers(settings, clock, copies=2) as copies:
        for scheduler in copies:
            await fire_due(scheduler)
        (raw,) = await fired_events(settings, first.id)
        fired = Envelope[schedule_events.ScheduleFired].model_validate(raw.model_dump())
        await handle_fired(fired, copies[0])
    records = await read_topic(settings, topics.SCHEDULE_EVENTS.name)
    due_events = [e for e in map(decode_raw, (r.value for r in records)) if e.type == "task.due"]
    assert [(e.payload["task_id"], e.payload["remind_before_s"]) for e in due_events] == [
        (str(task_id), 3600)
    ]
    assert due_events[0].payload["title"] == "Call Ana"
    # The later reminder has not come yet; the one-shot schedule that fired has no next slot.
    assert await fired_events(settings, reminders[1].id) == []
    (after, _) = await task_store.reminders_of(db, task_id)
    assert after.next_fire_at is None


async def test_schedules_list_command_shows_next_fire_times(
    services: ServiceAddresses, db: Database, client: httpx.AsyncClient
) -> None:
    admin = await make_tenant(db, admin=True)
    body = {"name": "weekday digest", "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin",
            "target": {"job": {"model": "local-echo", "prompt": "digest"}}}  # fmt: skip
    created = await client.post("/v1/schedules", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    env = {**os.environ, **services.as_env()}
    command = [sys.executable, "-m", "ayush.cli", "schedules", "list"]
    result = await asyncio.to_thread(
        subprocess.run,
        [*command, "--tenant", str(admin.tenant_id)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert created.json()["id"] in result.stdout and "weekday digest" in result.stdout
    assert "0 9 * * 1-5 (Europe/Berlin)" in result.stdout


async def test_a_forgotten_users_tasks_and_schedules_are_erased(
    db: Database, client: httpx.AsyncClient
) -> None:
    admin = await make_tenant(db, admin=True)
    user = unique("gone-")
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    task = await client.post(
        "/v1/tasks",
        json={"title": "private", "user_id": user, "due_at": due, "reminders": [60]},
        headers=admin.headers,
    )
    assert task.status_code == 201, task.text
    mine = await user_headers(client, admin, user)
    body = {"name": "mine", "interval_s": 600, "target": {"job": {"model": "local-echo",
            "prompt": "private prompt"}}}  # fmt: skip
    assert (await client.post("/v1/schedules", json=body, headers=mine)).status_code == 201
    erased = await erase_user(db, admin.tenant_id, user, uuid7())
    assert (erased["tasks"], erased["schedules"]) == (1, 2)  # the task's reminder and the schedule
    assert (await client.get("/v1/schedules", headers=admin.headers)).json()["data"] == []
    assert await task_store.reminders_of(db, uuid.UUID(task.json()["id"])) == []
