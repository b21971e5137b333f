"""Alerts end to end: rules made over HTTP (a real ingress), model calls run by a real
model-calls worker against the fake upstream (which fails on demand), the alerts group
consuming in this process with its evaluator on a short timer and a clock the test moves,
and the notifications group delivering `alert.*` to a local receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from ayush.groups import GROUPS
from consumers.groups.alerts import evaluating
from consumers.groups.alerts import group as alerts
from consumers.groups.notifications import group as notifications
from consumers.groups.notifications.dispatcher import Dispatcher
from infra.connectors.address_policy import AddressPolicy
from infra.connectors.outbound_webhook import WebhookSender
from infra.db import alerts as alert_store
from infra.db.alerts import Observation
from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from infra.vault import Vault
from schemas import jobs as job_events
from schemas import topics
from schemas import usage as usage_events
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.harness import Platform, eventually, unique
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.timeout(120)

# A model whose first call of each prompt is refused (400: not retried), the next answered.
FLAKY = "gpt-fake@fail=1@status=400"
EVAL_S = 0.05


@dataclass
class Clock:
    """The evaluator's now: the real time, moved by `offset`; counts the passes."""

    offset: timedelta = timedelta(0)
    calls: int = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return datetime.now(UTC) + self.offset

    async def passes(self, n: int) -> None:
        """Wait until the evaluator made `n` more passes."""
        target = self.calls + n
        await eventually(lambda: _true(self.calls >= target), 20, f"{n} evaluator passes")


async def _true(value: bool) -> bool | None:
    return value or None


@dataclass
class Stack:
    platform: Platform
    settings: Settings
    db: Database
    publisher: Publisher
    clock: Clock
    receiver: WebhookReceiver

    @property
    def url(self) -> str:
        return self.platform.url


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: WebhookReceiver,
    db: Database,
) -> AsyncIterator[Stack]:
    """An ingress and a model-calls worker (processes); the alerts group (as the worker
    builds it, on the test's clock) and the notifications group in this process."""
    platform, base = new_platform(services, fake_llm, tmp_path_factory.mktemp("alerts-logs"))
    settings = base.model_copy(
        update={"connector_allow": "127.0.0.1", "alert_eval_s": EVAL_S, "webhook_poll_s": 0.05}
    )
    platform.start_ingress_with({"AYUSH_CONNECTOR_ALLOW": "127.0.0.1"})
    clock = Clock()
    async with AsyncExitStack() as exits:
        exits.callback(platform.stop)
        platform.start_worker("model-calls")
        publisher = Publisher(settings)
        await publisher.start()
        exits.push_async_callback(publisher.stop)
        build = GROUPS["alerts"].build
        assert build is not None
        ports = dataclasses.replace(await build(settings, publisher, exits), clock=clock)
        sender = WebhookSender(AddressPolicy.parse(False, "127.0.0.1"), 2.0)
        exits.push_async_callback(sender.close)
        vault = Vault.from_setting(settings.encryption_keys)
        dispatcher = Dispatcher(settings, db, vault, sender, publisher)
        dispatcher.start()
        exits.push_async_callback(dispatcher.stop)
        runners = [
            GroupRunner.for_group(settings, alerts.group, ports, publisher),
            GroupRunner.for_group(
                settings, notifications.group, notifications.Ports(db, dispatcher), publisher
            ),
        ]
        for runner in runners:
            ready = asyncio.Event()
            task = asyncio.create_task(runner.run(ready=ready))
            exits.push_async_callback(_stopped, runner, task)
            await asyncio.wait_for(ready.wait(), 60)
        yield Stack(platform, settings, db, publisher, clock, receiver)


async def _stopped(runner: GroupRunner, task: asyncio.Task[None]) -> None:
    runner.stop()
    await task


async def call(stack: Stack, tenant: TenantKey, method: str, path: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as api:
        response = await api.request(method, path, headers=tenant.headers, **kw)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def new_rule(stack: Stack, tenant: TenantKey, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await call(
        stack, tenant, "POST", "/v1/alert-rules", json={"name": unique("rule-"), **body}
    )
    return created


async def episodes(stack: Stack, tenant: TenantKey, **query: Any) -> list[dict[str, Any]]:
    found = await call(stack, tenant, "GET", "/v1/alerts", params=query)
    return list(found["data"])


async def run_jobs(stack: Stack, tenant: TenantKey, model: str, prompts: list[str]) -> list[str]:
    """Submit one job per prompt, all at once; their final statuses."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as api:
        ids = []
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            body = {"kind": "chat", "model": model, "messages": messages}
            response = await api.post("/v1/jobs", json=body, headers=tenant.headers)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        async def finished(job_id: str) -> str | None:
            job = (await api.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
            return job["status"] if job["status"] in ("succeeded", "failed") else None

        return [await eventually(lambda j=j: finished(j), 30, "a job to finish") for j in ids]


async def alert_events(stack: Stack, rule_id: str) -> list[str]:
    """The types of the rule's events now in alerts.events, duplicates kept."""
    records = await read_topic(stack.settings, topics.ALERTS_EVENTS.name)
    events = [decode_raw(r.value) for r in records]
    return [e.type for e in events if e.payload["rule_id"] == rule_id]


async def spend(stack: Stack, tenant: TenantKey, usd: str, at: datetime) -> None:
    """A billable act of `usd`, as it happened at `at`."""
    job_id = uuid7()
    event = Envelope[job_events.UsageRecorded](
        type=job_events.USAGE_RECORDED, tenant_id=tenant.tenant_id, occurred_at=at,
        actor=Actor(kind="system", id="test"), correlation_id=job_id,
        payload=job_events.UsageRecorded(
            job_id=job_id, api_key_id=None, user_id=None, provider="openai",
            model="gpt-fake", input_tokens=10, output_tokens=10, cost_usd=Decimal(usd),
        ),
    )  # fmt: skip
    await stack.publisher.publish(topics.USAGE_RECORDED.name, event)


async def observed(stack: Stack, tenant: TenantKey, kind: str, n: int) -> None:
    """Wait until the alerts group counted `n` observations of the kind for the tenant."""

    async def probe() -> int | None:
        async with stack.db.session() as session:
            found = await session.execute(
                text("SELECT count(*) FROM alert_observations WHERE tenant_id = :t AND kind = :k"),
                {"t": tenant.tenant_id, "k": kind},
            )
            count = int(found.scalar_one())
        return count if count >= n else None

    await eventually(probe, 30, f"{n} {kind} observations")


async def test_an_error_burst_fires_one_alert_and_resolves_it_when_calls_succeed(
    stack: Stack,
) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    rule = await new_rule(
        stack, tenant, kind="error_rate", model=FLAKY, window_s=600, threshold=0.5, min_events=3
    )
    assert rule["params"] == {"model": FLAKY, "window_s": 600, "threshold": 0.5, "min_events": 3}
    prompts = [unique("burst ") for _ in range(4)]
    assert await run_jobs(stack, tenant, FLAKY, prompts) == ["failed"] * 4

    (firing,) = await eventually(lambda: _some(episodes(stack, tenant, state="firing")), 20)
    assert firing["rule_id"] == rule["id"] and firing["value"] == 1.0
    assert firing["threshold"] == 0.5 and firing["resolved_at"] is None
    await stack.clock.passes(5)  # still failing: nothing more fires
    assert await alert_events(stack, rule["id"]) == ["alert.fired"]

    # The same prompts again: answered now. 4 failed of 12 is under the threshold.
    assert await run_jobs(stack, tenant, FLAKY, prompts * 2) == ["succeeded"] * 8
    (resolved,) = await eventually(lambda: _some(episodes(stack, tenant, state="resolved")), 20)
    assert resolved["id"] == firing["id"] and resolved["resolved_at"] is not None
    assert await episodes(stack, tenant, state="firing") == []
    await stack.clock.passes(3)
    assert await alert_events(stack, rule["id"]) == ["alert.fired", "alert.resolved"]


async def _some(found: Any) -> Any:
    got = await found
    return got or None


async def test_a_spend_spike_fires_the_anomaly_rule_and_resolves_when_the_hour_passes(
    stack: Stack,
) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    rule = await new_rule(
        stack, tenant, kind="spend_anomaly", baseline_hours=4, factor=3, min_usd=1
    )
    now = datetime.now(UTC)
    for hours in (1.5, 2.5, 3.5, 4.5):  # $1 an hour before the last hour
        await spend(stack, tenant, "1.00", now - timedelta(hours=hours))
    await spend(stack, tenant, "5.00", now - timedelta(minutes=5))  # 5x in the last hour
    await observed(stack, tenant, "spend", 5)

    (firing,) = await eventually(lambda: _some(episodes(stack, tenant, state="firing")), 20)
    assert firing["rule_id"] == rule["id"]
    assert firing["value"] == pytest.approx(5.0) and firing["threshold"] == 3.0

    stack.clock.offset = timedelta(hours=2)  # the spike is no longer the last hour's
    try:
        await eventually(lambda: _some(episodes(stack, tenant, state="resolved")), 20)
    finally:
        stack.clock.offset = timedelta(0)
    assert await alert_events(stack, rule["id"]) == ["alert.fired", "alert.resolved"]


async def test_steady_traffic_fires_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    await new_rule(stack, tenant, kind="error_rate", model="gpt-fake", threshold=0.2, min_events=3)
    await new_rule(stack, tenant, kind="latency_p95", threshold_ms=30_000, min_events=1)
    await new_rule(stack, tenant, kind="spend_anomaly", baseline_hours=4, factor=3, min_usd=0)
    await new_rule(stack, tenant, kind="dead_letters", min_events=1)
    now = datetime.now(UTC)
    for hours in (0.5, 1.5, 2.5, 3.5, 4.5):  # the same spend every hour, the last one too
        await spend(stack, tenant, "1.00", now - timedelta(hours=hours))
    prompts = [unique("steady ") for _ in range(5)]
    assert await run_jobs(stack, tenant, "gpt-fake", prompts) == ["succeeded"] * 5
    await observed(stack, tenant, "model_call", 5)
    await observed(stack, tenant, "spend", 5)
    await stack.clock.passes(5)
    assert await episodes(stack, tenant) == []


async def test_bad_rule_input_is_refused_naming_the_field(stack: Stack) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "error_rate", "model": "gpt-fake"}, "threshold"),
        ({"kind": "error_rate", "model": "gpt-fake", "threshold": 5}, "threshold"),
        ({"kind": "error_rate", "threshold": 0.5}, "model"),
        ({"kind": "latency_p95", "threshold_ms": 100, "factor": 2}, "factor"),
        ({"kind": "spend_anomaly", "window_s": 1}, "window_s"),
        ({"kind": "consumer_lag", "group": "usage"}, "max_lag"),
        ({"kind": "sometimes"}, "kind"),
        ({"kind": "budget", "channels": [{"kind": "slack", "channel": "C1"}]}, "connection_id"),
        (
            {"kind": "budget", "channels": [{"kind": "email", "connection_id": str(uuid7()),
                                             "to": ["ops@example.com\nBcc: x@y.z"]}]},
            "channels.0.to",
        ),
        (
            {"kind": "budget", "channels": [{"kind": "email", "connection_id": str(uuid7()),
                                             "to": ["ops@example.com"]}]},
            "channels[0].connection_id",
        ),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as api:
        for body, field in cases:
            response = await api.post(
                "/v1/alert-rules", json={"name": "r", **body}, headers=tenant.headers
            )
            assert response.status_code == 422, (body, response.text)
            details = response.json()["details"]
            assert any(field in d["field"] for d in details), (body, details)
        rule_id = (
            await api.post(
                "/v1/alert-rules",
                json={"name": "r", "kind": "budget", "threshold_pct": 80},
                headers=tenant.headers,
            )
        ).json()["id"]
        patched = await api.patch(
            f"/v1/alert-rules/{rule_id}", json={"threshold": 0.5}, headers=tenant.headers
        )
        assert patched.status_code == 422 and patched.json()["field"] == "threshold"
        patched = await api.patch(
            f"/v1/alert-rules/{rule_id}", json={"threshold_pct": 100}, headers=tenant.headers
        )
        assert patched.status_code == 200 and patched.json()["params"]["threshold_pct"] == 100
        listed = (await api.get("/v1/alert-rules", headers=tenant.headers)).json()
        assert [r["id"] for r in listed["data"]] == [rule_id] and not listed["has_more"]
        gone = await api.delete(f"/v1/alert-rules/{rule_id}", headers=tenant.headers)
        assert gone.status_code == 204
        missing = await api.get(f"/v1/alert-rules/{rule_id}", headers=tenant.headers)
        assert missing.status_code == 404


async def test_a_webhook_subscriber_of_alerts_receives_alert_fired(stack: Stack) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    path = unique("alerts")
    await call(
        stack, tenant, "POST", "/v1/webhook-subscriptions",
        json={"url": f"{stack.receiver.url}/{path}", "event_types": ["alert.*"]},
    )  # fmt: skip
    rule = await new_rule(stack, tenant, kind="budget", threshold_pct=80)
    crossed = usage_events.BudgetThresholdCrossed(
        scope="tenant", period="2026-12", threshold_pct=100, limit_usd=Decimal("10"),
        spent_usd=Decimal("10"), resets_at=datetime(2027, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    event = Envelope[usage_events.BudgetThresholdCrossed](
        type=usage_events.BUDGET_THRESHOLD_CROSSED, tenant_id=tenant.tenant_id,
        actor=Actor(kind="system", id="test"), correlation_id=uuid.uuid4(), payload=crossed,
    )  # fmt: skip
    await stack.publisher.publish(topics.USAGE_BUDGET.name, event)
    (firing,) = await eventually(lambda: _some(episodes(stack, tenant, state="firing")), 20)

    async def delivered() -> list[Any] | None:
        return list(stack.receiver.received.get(path, [])) or None

    (first, *_) = await eventually(delivered, 30, "alert.fired delivered")
    sent = orjson.loads(first.body)
    assert sent["type"] == "alert.fired"
    assert sent["data"]["rule_id"] == rule["id"] and sent["data"]["kind"] == "budget"
    assert sent["data"]["state"] == "firing" and sent["data"]["value"] == 1.0
    assert sent["data"]["alert_id"] == firing["id"]


async def test_evaluators_side_by_side_open_one_episode_and_announce_it_under_one_id(
    stack: Stack,
) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    created = await new_rule(stack, tenant, kind="dead_letters", min_events=1)
    rule = await alert_store.get_rule(stack.db, tenant.tenant_id, uuid.UUID(created["id"]))
    assert rule is not None
    now = datetime.now(UTC)
    at = now - timedelta(seconds=1)
    letter = Observation(uuid7(), tenant.tenant_id, "dead_letter", "x.dlq", at)
    await alert_store.observe(stack.db, [letter])
    # Three evaluators at once (and the group's own on its timer beside them), each a
    # moment apart: one episode.
    copies = [
        evaluating.Ports(stack.settings, stack.db, stack.publisher, lambda i=i: now)
        for i in range(3)
    ]
    await asyncio.gather(
        *(evaluating.evaluate_rule(rule, now + timedelta(milliseconds=i), p) for i, p in
          enumerate(copies))
    )  # fmt: skip
    (firing,) = await eventually(lambda: _some(episodes(stack, tenant, state="firing")), 20)

    async def fired_ids() -> set[str]:
        records = await read_topic(stack.settings, topics.ALERTS_EVENTS.name)
        events = [decode_raw(r.value) for r in records]
        return {str(e.id) for e in events if e.payload["rule_id"] == created["id"]}

    assert await eventually(fired_ids, 20) == {firing["id"]}
    # An evaluator that stopped after publishing, before marking the episode sent: the
    # next pass announces it again, under the same id.
    async with stack.db.transaction() as session:
        await session.execute(
            text("UPDATE alert_episodes SET fired_sent = false WHERE id = :id"),
            {"id": firing["id"]},
        )
    await evaluating.evaluate_rule(rule, datetime.now(UTC), copies[0])
    assert await fired_ids() == {firing["id"]}
    assert len(await episodes(stack, tenant)) == 1


async def test_a_slack_channel_asks_the_connector_to_post_and_disabling_resolves(
    stack: Stack,
) -> None:
    tenant = await make_tenant(stack.db, admin=True)
    connection = await call(
        stack, tenant, "POST", "/v1/connections",
        json={"connector": "slack", "credentials": {"bot_token": "xoxb-test"}},
    )  # fmt: skip
    channels = [{"kind": "webhook"}, {"kind": "slack", "connection_id": connection["id"],
                                      "channel": "C0ALERTS"}]  # fmt: skip
    rule = await new_rule(stack, tenant, kind="dead_letters", min_events=1, channels=channels)
    await alert_store.observe(
        stack.db,
        [Observation(uuid7(), tenant.tenant_id, "dead_letter", "x.dlq", datetime.now(UTC))],
    )
    await eventually(lambda: _some(episodes(stack, tenant, state="firing")), 20)
    # Turned off while firing: the episode resolves.
    await call(stack, tenant, "PATCH", f"/v1/alert-rules/{rule['id']}", json={"enabled": False})
    await eventually(lambda: _some(episodes(stack, tenant, state="resolved")), 20)

    async def posts() -> list[dict[str, Any]] | None:
        records = await read_topic(stack.settings, topics.INTEGRATION_ACTION_REQUESTED.name)
        events = [decode_raw(r.value) for r in records]
        found = [e.payload for e in events if e.payload.get("connection_id") == connection["id"]]
        return found if len(found) >= 2 else None

    found = await eventually(posts, 20, "two Slack posts asked for")
    # Two jobs, maybe on two partitions: in the order of their texts.
    fired, resolved = sorted(found, key=lambda p: str(p["params"]["text"]))
    assert fired["connector"] == "slack" and fired["action"] == "post_message"
    assert fired["params"]["channel"] == "C0ALERTS"
    assert fired["params"]["text"].startswith(f"[FIRING] {rule['name']}")
    assert resolved["params"]["text"].startswith(f"[RESOLVED] {rule['name']}")
    # Each is a job of the tenant's, as any action is.
    job = await call(stack, tenant, "GET", f"/v1/jobs/{fired['job_id']}")
    assert job["kind"] == "action"
