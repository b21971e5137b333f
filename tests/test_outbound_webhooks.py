"""Outbound webhooks end to end: subscriptions made over HTTP (a real ingress), events
published to Kafka, the notifications group consuming them and its due-attempts loop
delivering to a local receiver that fails, answers slowly or never. Signatures are verified
with the Standard Webhooks reference package; the retry schedule is scaled down by
AYUSH_WEBHOOK_RETRY_SCALE's setting."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consumers.groups.notifications import group as notifications
from consumers.groups.notifications.dispatcher import Dispatcher
from infra.connectors.address_policy import AddressPolicy
from infra.connectors.outbound_webhook import WebhookSender
from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from infra.vault import Vault
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.fakes.webhook_receiver import Received, WebhookReceiver
from tests.harness import unique
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.timeout(180)

OVERLAP_S = 3.0
# Tests' schedule: 5 s -> 5 ms, 5 min -> 0.3 s, 30 min -> 1.8 s, 2 h -> 7.2 s ...
SCALE = 0.001
# Five days of failures, scaled as the schedule is: 2.16 s ... here, 1.5 s.
DISABLE_AFTER_S = 1500.0


@dataclass
class Hooks:
    url: str
    settings: Settings
    db: Database
    publisher: Publisher
    receiver: WebhookReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture(scope="module")
async def hooks(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: WebhookReceiver,
    db: Database,
) -> AsyncIterator[Hooks]:
    """An ingress (subscriptions) and the notifications group's consumer, in this process;
    each test runs its own due-attempts loop (`dispatching`)."""
    platform, base = new_platform(services, fake_llm, tmp_path_factory.mktemp("hooks-logs"))
    settings = base.model_copy(
        update={"connector_allow": "127.0.0.1", "webhook_secret_overlap_s": OVERLAP_S}
    )
    platform.start_ingress_with(
        {"AYUSH_CONNECTOR_ALLOW": "127.0.0.1", "AYUSH_WEBHOOK_SECRET_OVERLAP_S": str(OVERLAP_S)}
    )
    publisher = Publisher(settings)
    await publisher.start()
    group = notifications.group
    runner = GroupRunner(
        settings, group=group.name, topics=group.topics,
        routes=group.routes(notifications.Ports(db)), publisher=publisher,
        policy=group.policy(settings),
    )  # fmt: skip
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        yield Hooks(platform.url, settings, db, publisher, receiver)
    finally:
        runner.stop()
        await task
        await publisher.stop()
        platform.stop()


@asynccontextmanager
async def dispatching(hooks: Hooks, **overrides: Any) -> AsyncIterator[Dispatcher]:
    """The due-attempts loop, as the worker builds it, with these settings."""
    settings = hooks.settings.model_copy(
        update={
            "webhook_retry_scale": SCALE,
            "webhook_disable_after_s": DISABLE_AFTER_S,
            "webhook_poll_s": 0.02,
            "webhook_timeout_s": 1.0,
            **overrides,
        }
    )
    policy = AddressPolicy.parse(False, settings.connector_allow)
    sender = WebhookSender(policy, settings.webhook_timeout_s)
    dispatcher = Dispatcher(
        settings, hooks.db, Vault.from_setting(settings.encryption_keys), sender, hooks.publisher
    )
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
        await sender.close()


async def admin(db: Database) -> TenantKey:
    return await make_tenant(db, admin=True)


async def subscribe(
    hooks: Hooks, tenant: TenantKey, url: str, types: list[str] | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=hooks.url, timeout=30) as api:
        response = await api.post(
            "/v1/webhook-subscriptions",
            json={"url": url, "event_types": types or ["job.*"], "description": "test"},
            headers=tenant.headers,
        )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def call(hooks: Hooks, tenant: TenantKey, method: str, path: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=hooks.url, timeout=30) as api:
        response = await api.request(method, path, headers=tenant.headers, **kw)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def job_succeeded(hooks: Hooks, tenant: TenantKey, text: str = "the answer") -> uuid.UUID:
    job_id = uuid7()
    event = Envelope[job_events.JobSucceeded](
        type=job_events.JOB_SUCCEEDED, tenant_id=tenant.tenant_id,
        actor=Actor(kind="system", id="test"), correlation_id=job_id,
        payload=job_events.JobSucceeded(
            job_id=job_id, provider="openai", model="gpt-4o-mini",
            usage=job_events.TokenUsage(input_tokens=3, output_tokens=4), text=text,
        ),
    )  # fmt: skip
    await hooks.publisher.publish(topics.AI_JOB_LIFECYCLE.name, event)
    return job_id


async def until(check: Callable[[], Awaitable[Any] | Any], deadline_s: float = 20.0) -> Any:
    """Poll `check` until it returns something true, within the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


def received(hooks: Hooks, path: str, n: int = 1) -> Callable[[], list[Received] | None]:
    def check() -> list[Received] | None:
        got = hooks.receiver.received.get(path, [])
        return list(got) if len(got) >= n else None

    return check


async def test_subscriptions_refuse_unknown_types_and_private_urls_naming_the_field(
    hooks: Hooks,
) -> None:
    tenant = await admin(hooks.db)
    async with httpx.AsyncClient(base_url=hooks.url, timeout=30) as api:
        bad_type = await api.post(
            "/v1/webhook-subscriptions",
            json={"url": hooks.receiver.url + "/x", "event_types": ["job.exploded"]},
            headers=tenant.headers,
        )
        private = await api.post(
            "/v1/webhook-subscriptions",
            json={"url": "http://10.1.2.3/hook", "event_types": ["*"]},
            headers=tenant.headers,
        )
        developer = await make_tenant(hooks.db)
        refused = await api.get("/v1/webhook-subscriptions", headers=developer.headers)
    assert bad_type.status_code == 422 and "event_types" in bad_type.text
    assert private.status_code == 422 and private.json()["details"][0]["field"] == "url"
    assert refused.status_code == 403
    created = await subscribe(hooks, tenant, hooks.receiver.url + "/x", ["*"])
    assert created["secret"].startswith("whsec_")
    shown = await call(hooks, tenant, "GET", f"/v1/webhook-subscriptions/{created['id']}")
    assert shown["secret"] is None and shown["event_types"] == ["*"]
    listed = await call(hooks, tenant, "GET", "/v1/webhook-subscriptions")
    assert [s["id"] for s in listed["data"]] == [created["id"]]
    other = await admin(hooks.db)
    async with httpx.AsyncClient(base_url=hooks.url, timeout=30) as api:
        hidden = await api.get(f"/v1/webhook-subscriptions/{created['id']}", headers=other.headers)
    assert hidden.status_code == 404


async def test_a_delivery_is_signed_per_standard_webhooks_without_the_answer_text(
    hooks: Hooks,
) -> None:
    tenant = await admin(hooks.db)
    path = unique("signed")
    sub = await subscribe(hooks, tenant, hooks.receiver.plan(path, "ok"), ["job.succeeded"])
    async with dispatching(hooks):
        job_id = await job_succeeded(hooks, tenant, text="a private answer")
        (got,) = await until(received(hooks, path))
        (delivery,) = await settled(hooks, tenant, f"/v1/webhook-subscriptions/{sub['id']}")
    payload = Webhook(sub["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["job_id"] == str(job_id)
    assert payload["data"]["usage"] == {"input_tokens": 3, "output_tokens": 4}
    assert b"a private answer" not in got.body
    assert got.headers["webhook-id"].startswith("msg_")
    assert delivery["id"] == got.headers["webhook-id"]
    assert delivery["status"] == "delivered" and delivery["last_status_code"] == 200
    assert delivery["last_response"] == "thanks" and delivery["last_latency_ms"] is not None


async def test_failed_deliveries_are_retried_on_the_scaled_schedule(hooks: Hooks) -> None:
    tenant = await admin(hooks.db)
    path = unique("retry")
    url = hooks.receiver.plan(path, "fail", "fail", "fail", "ok")
    sub = await subscribe(hooks, tenant, url)
    async with dispatching(hooks):
        await job_succeeded(hooks, tenant)
        attempts = await until(received(hooks, path, 4))
        (delivery,) = await settled(hooks, tenant, f"/v1/webhook-subscriptions/{sub['id']}")
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    # immediately, then 5 s, 5 min, 30 min scaled by 0.001: 5 ms, 300 ms, 1.8 s
    for gap, planned in zip(gaps, (0.005, 0.3, 1.8), strict=True):
        assert planned <= gap < planned + 1.0, (gaps, planned)
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
    for attempt in attempts:
        Webhook(sub["secret"]).verify(attempt.body, attempt.headers)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 4


async def test_an_endpoint_failing_for_the_window_is_disabled_with_an_event(
    hooks: Hooks,
) -> None:
    tenant = await admin(hooks.db)
    dead, watcher = unique("dead"), unique("watch")
    sub = await subscribe(hooks, tenant, hooks.receiver.plan(dead, "fail"))
    await subscribe(hooks, tenant, hooks.receiver.plan(watcher, "ok"), ["webhook.disabled"])
    path = f"/v1/webhook-subscriptions/{sub['id']}"
    async with dispatching(hooks):
        await job_succeeded(hooks, tenant)

        async def disabled() -> dict[str, Any] | None:
            shown: dict[str, Any] = await call(hooks, tenant, "GET", path)
            return shown if not shown["enabled"] else None

        shown = await until(disabled)
        (news,) = await until(received(hooks, watcher))
    assert "failed" in shown["disabled_reason"]
    tried = hooks.receiver.received[dead]
    # 0, 5 ms, 300 ms, 1.8 s: the fourth failure is past the 1.5 s window (on a machine
    # that stalls, an earlier one may be); disabled at the first failure past it, not later
    spans = [r.at - tried[0].at for r in tried]
    assert spans[-1] >= DISABLE_AFTER_S * SCALE and len(tried) <= 4, spans
    assert all(span < DISABLE_AFTER_S * SCALE for span in spans[:-1]), spans
    body = orjson.loads(news.body)
    assert body["type"] == "webhook.disabled"
    assert body["data"]["subscription_id"] == sub["id"]
    events = [
        decode_raw(r.value)
        for r in await read_topic(hooks.settings, topics.NOTIFICATIONS_EVENTS.name)
    ]
    assert any(str(e.payload["subscription_id"]) == sub["id"] for e in events)
    # Disabled: a new event reaches it no more.
    await job_succeeded(hooks, tenant)
    log = await call(hooks, tenant, "GET", path + "/deliveries")
    assert len(log["data"]) == 1


async def test_redelivering_one_message_keeps_its_webhook_id(hooks: Hooks) -> None:
    tenant = await admin(hooks.db)
    path = unique("redeliver")
    sub = await subscribe(hooks, tenant, hooks.receiver.plan(path, "fail", "ok"))
    base = f"/v1/webhook-subscriptions/{sub['id']}"
    # Unscaled: the retry would come 5 s later; the redelivery comes now.
    async with dispatching(hooks, webhook_retry_scale=1.0, webhook_disable_after_s=3600.0):
        await job_succeeded(hooks, tenant)
        (first,) = await until(received(hooks, path))
        log = await until(lambda: call(hooks, tenant, "GET", base + "/deliveries"), deadline_s=5)
        delivery = log["data"][0]
        await until(lambda: _attempted(hooks, tenant, base))
        asked = time.monotonic()
        redone = await call(hooks, tenant, "POST", f"{base}/deliveries/{delivery['id']}/redeliver")
        assert redone == {"redelivered": 1}
        _, again = await until(received(hooks, path, 2))
        (delivery,) = await settled(hooks, tenant, base)
    assert again.at - asked < 2.0
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == delivery["id"]
    assert again.body == first.body
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2


async def settled(
    hooks: Hooks, tenant: TenantKey, base: str, status: str = "delivered", n: int = 1
) -> list[dict[str, Any]]:
    """The delivery log once `n` of its messages have `status` (attempts are recorded after
    the receiver answered, so a test that saw the request polls for its outcome)."""

    async def check() -> list[dict[str, Any]] | None:
        log = await call(hooks, tenant, "GET", base + "/deliveries")
        done = [d for d in log["data"] if d["status"] == status]
        return log["data"] if len(done) >= n else None

    found: list[dict[str, Any]] = await until(check)
    return found


async def _attempted(hooks: Hooks, tenant: TenantKey, base: str) -> bool:
    log = await call(hooks, tenant, "GET", base + "/deliveries")
    return bool(log["data"]) and all(d["attempts"] >= 1 for d in log["data"])


async def test_redelivering_since_a_time_sends_what_was_not_delivered_since(
    hooks: Hooks,
) -> None:
    tenant = await admin(hooks.db)
    path = unique("since")
    sub = await subscribe(hooks, tenant, hooks.receiver.plan(path, "fail", "fail", "fail", "ok"))
    base = f"/v1/webhook-subscriptions/{sub['id']}"
    async with dispatching(hooks, webhook_retry_scale=1.0, webhook_disable_after_s=3600.0):
        await job_succeeded(hooks, tenant)
        await until(received(hooks, path, 1))
        since = datetime.now(UTC)
        await job_succeeded(hooks, tenant)
        await job_succeeded(hooks, tenant)
        await until(received(hooks, path, 3))
        await until(lambda: _attempted(hooks, tenant, base))
        first_id = hooks.receiver.received[path][0].headers["webhook-id"]
        redone = await call(
            hooks, tenant, "POST", base + "/redeliver", json={"since": since.isoformat()}
        )
        assert redone == {"redelivered": 2}
        got = await until(received(hooks, path, 5))
        log = await settled(hooks, tenant, base, "delivered", 2)
    again = {r.headers["webhook-id"] for r in got[3:]}
    assert first_id not in again and len(again) == 2
    status = {d["id"]: d["status"] for d in log}
    assert status[first_id] == "pending"
    assert [status[i] for i in again] == ["delivered", "delivered"]


async def test_a_rotated_secret_signs_beside_the_new_one_for_the_overlap(
    hooks: Hooks,
) -> None:
    tenant = await admin(hooks.db)
    path = unique("rotate")
    sub = await subscribe(hooks, tenant, hooks.receiver.plan(path, "ok"))
    base = f"/v1/webhook-subscriptions/{sub['id']}"
    rotated = await call(hooks, tenant, "POST", base + "/rotate-secret")
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != sub["secret"]
    async with dispatching(hooks):
        await job_succeeded(hooks, tenant)
        (during,) = await until(received(hooks, path))
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        Webhook(sub["secret"]).verify(during.body, during.headers)
        Webhook(rotated["secret"]).verify(during.body, during.headers)
        ends = datetime.fromisoformat(rotated["previous_secret_valid_until"])
        await until(lambda: datetime.now(UTC) > ends, deadline_s=OVERLAP_S + 5)
        await job_succeeded(hooks, tenant)
        _, after = await until(received(hooks, path, 2))
    Webhook(rotated["secret"]).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(sub["secret"]).verify(after.body, after.headers)


async def test_a_dead_endpoint_does_not_delay_another_tenants_deliveries(
    hooks: Hooks,
) -> None:
    dead_tenant, live_tenant = await admin(hooks.db), await admin(hooks.db)
    dead, live = unique("hang"), unique("live")
    await subscribe(hooks, dead_tenant, hooks.receiver.plan(dead, "hang"))
    slow = unique("slow")
    await subscribe(hooks, dead_tenant, hooks.receiver.plan(slow, "slow:0.8"))
    await subscribe(hooks, live_tenant, hooks.receiver.plan(live, "ok"))
    async with dispatching(hooks, webhook_timeout_s=5.0, webhook_disable_after_s=3600.0):
        for _ in range(20):
            await job_succeeded(hooks, dead_tenant)
        # The dead endpoint holds its slots (four at once), and only those.
        await until(received(hooks, dead, 4))
        started = time.monotonic()
        for _ in range(5):
            await job_succeeded(hooks, live_tenant)
        got = await until(received(hooks, live, 5))
    # Well inside the dead endpoint's 5 s timeout: the live tenant never waited for it.
    assert max(r.at for r in got) - started < 4.0
    assert len(hooks.receiver.received[dead]) == 4  # never more than its cap at once


async def test_pending_attempts_wait_in_postgres_for_the_loop_to_come_back(
    hooks: Hooks,
) -> None:
    """Messages written while no due-attempts loop runs, and a retry scheduled by a loop that
    then stopped, are both sent by the next loop: nothing pending lives only in memory."""
    tenant = await admin(hooks.db)
    path = unique("restart")
    sub = await subscribe(hooks, tenant, hooks.receiver.plan(path, "fail", "ok"))
    base = f"/v1/webhook-subscriptions/{sub['id']}"
    await job_succeeded(hooks, tenant)
    (waiting,) = await settled(hooks, tenant, base, "pending")
    assert waiting["attempts"] == 0 and not hooks.receiver.received.get(path)
    # The first loop makes the first attempt (it fails) and stops before the retry is due.
    # (The retry is 5 s away: a loaded machine still stops the loop before it is due.)
    async with dispatching(hooks, webhook_retry_scale=1.0, webhook_disable_after_s=3600.0):
        await until(received(hooks, path, 1))
        await until(lambda: _attempted(hooks, tenant, base))
    assert len(hooks.receiver.received[path]) == 1
    async with dispatching(hooks, webhook_retry_scale=1.0, webhook_disable_after_s=3600.0):
        first, retried = await until(received(hooks, path, 2))
        (delivery,) = await settled(hooks, tenant, base)
    assert retried.at - first.at >= 5 * 1.0  # the retry kept its time across the restart
    assert retried.headers["webhook-id"] == first.headers["webhook-id"]
    assert delivery["attempts"] == 2
