"""A schedule whose AI job's answer feeds a Slack message, end to end through the workers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from infra.db.engine import Database
from tests.conftest import TenantKey
from tests.harness import unique
from tests.integrations.conftest import Integrations
from tests.integrations.helpers import connect, vendor_calls
from tests.scheduling import pause_every_schedule

pytestmark = pytest.mark.timeout(300)


async def test_scheduled_job_answer_is_posted_to_slack(
    api: httpx.AsyncClient,
    tenant: TenantKey,
    integrations: Integrations,
    tmp_path: Path,
    db: Database,
) -> None:
    await pause_every_schedule(db)  # the scheduler started here fires only this test's
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    channel = unique("C")
    created = await api.post(
        "/v1/schedules",
        json={
            "name": "hourly digest",
            "interval_s": 3600,
            "target": {
                "job": {"model": "local-echo", "prompt": "Digest of {{ schedule.name }}"},
                "action": {"connection_id": slack, "action": "post_message",
                           "params": {"channel": channel, "text": "{{ result }}"}},
            },
        },
        headers=tenant.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    slot = datetime.fromisoformat(created.json()["next_fire_at"])
    clock = tmp_path / "clock"
    clock.write_text((slot + timedelta(seconds=1)).isoformat())
    env = {"AYUSH_SCHEDULER_CLOCK_FILE": str(clock), "AYUSH_SCHEDULER_TICK_S": "0.1"}
    scheduler = integrations.platform.start_worker("scheduler", env)
    try:
        calls = await vendor_calls(integrations, "slack", channel)
    finally:
        scheduler.terminate(15)
    # local-echo answers with the prompt: the job saw the schedule's name.
    assert [c.body["text"] for c in calls] == ["Digest of hourly digest"]
