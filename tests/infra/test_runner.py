"""The group runner, on every delivery policy: time budgets, dead letters, rebalances."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from infra.db.engine import Database
from infra.kafka.admin import create_topics
from infra.kafka.dead_letters import DeadLetters
from infra.kafka.policies import Batches, Each, Policy, RetryPolicy
from infra.kafka.publisher import Publisher
from infra.kafka.routes import Route
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.ids import uuid7
from tests.conftest import make_tenant, namespace_settings
from tests.harness import eventually, unique

TOPIC = topics.AI_JOB_LIFECYCLE.name
POLICIES = [pytest.param(Each(8), id="each"), pytest.param(Batches(5, 0.05), id="batches")]


@dataclass
class Recorder:
    """Handles `ai.job.failed` events; hangs on those whose error says so."""

    delay_s: float = 0.0
    handled: list[uuid.UUID] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    # When given, every call waits for it: the work stays in hand until something happens.
    gate: asyncio.Event | None = None

    async def __call__(self, events: Any) -> None:
        batch: list[RawEnvelope] = events if isinstance(events, list) else [events]
        self.started.set()
        if any(e.payload["error"] == "hang" for e in batch):
            self.hanging.set()
            await asyncio.Event().wait()
        if self.gate is not None:
            await self.gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the work a handler does, not a wait in the test
        self.handled.extend(e.id for e in batch)


class Watched(GroupRunner):
    """A runner that says when it starts handing partitions over to another member."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revoking = asyncio.Event()

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.revoking.set()
        await super().hand_over(revoked)


def runner(
    settings: Settings,
    publisher: Publisher,
    policy: Policy,
    recorder: Recorder,
    group: str = "runner",
    retry: RetryPolicy | None = None,
) -> Watched:
    route = Route(recorder, batch=isinstance(policy, Batches))
    return Watched(
        settings, group=group, topics=[TOPIC], routes={job_events.JOB_FAILED: route},
        publisher=publisher, policy=policy, retry=retry,
    )  # fmt: skip


@asynccontextmanager
async def running(group: GroupRunner) -> AsyncIterator[GroupRunner]:
    ready = asyncio.Event()
    task = asyncio.create_task(group.run(ready=ready, drain_timeout_s=5))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        yield group
    finally:
        group.stop()
        await task


@pytest.fixture
async def setup(services: ServiceAddresses) -> AsyncIterator[tuple[Settings, Publisher]]:
    settings = namespace_settings(services, unique("runner") + ".")
    await create_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    yield settings, publisher
    await publisher.stop()


def failed_job(error: str = "x", key: uuid.UUID | None = None) -> Envelope[Any]:
    job_id = key or uuid7()
    return Envelope[job_events.JobFailed](
        type=job_events.JOB_FAILED, tenant_id=uuid7(), actor=Actor(kind="system", id="test"),
        correlation_id=job_id, payload=job_events.JobFailed(job_id=job_id, error=error),
    )  # fmt: skip


@pytest.mark.parametrize("policy", POLICIES)
async def test_a_hung_handler_is_retried_then_dead_lettered_and_the_rest_flows(
    setup: tuple[Settings, Publisher], policy: Policy
) -> None:
    settings, publisher = setup
    recorder = Recorder()
    # Long enough a budget that the others are handled well inside it.
    retry = RetryPolicy(attempts=2, timeout_s=3.0, backoff_s=0.05)
    async with running(runner(settings, publisher, policy, recorder, retry=retry)) as group:
        hung = failed_job("hang")
        await publisher.publish(TOPIC, hung)
        await asyncio.wait_for(recorder.hanging.wait(), 30)
        others = [failed_job() for _ in range(12)]  # on every partition
        await publisher.publish_many([(TOPIC, e) for e in others])
        await eventually(lambda: _has(recorder, others), what="the other events handled")
        flowed_while_hung = group.dead_lettered == 0
        dead = DeadLetters(settings, TOPIC)
        letters = await eventually(dead.letters, what="the hung event dead-lettered")
        # after it, its own partition flows again
        later = failed_job(key=hung.correlation_id)
        await publisher.publish(TOPIC, later)
        await eventually(lambda: _has(recorder, [later]), what="an event behind the hung one")
    assert [(letter.attempts, letter.error) for letter in letters] == [(2, "TimeoutError")]
    assert hung.id not in recorder.handled
    assert flowed_while_hung, "the other events waited for the hung one to be given up"


@pytest.mark.parametrize("policy", POLICIES)
async def test_an_unparseable_event_is_dead_lettered_and_the_group_continues(
    setup: tuple[Settings, Publisher], policy: Policy
) -> None:
    settings, publisher = setup
    recorder = Recorder()
    async with running(runner(settings, publisher, policy, recorder)):
        key = uuid7()
        await publisher.send(settings.topic(TOPIC), b"{not json", key=str(key).encode(), headers=[])
        after = failed_job(key=key)
        await publisher.publish(TOPIC, after)
        await eventually(lambda: _has(recorder, [after]), what="the event after it handled")
        letters = await eventually(DeadLetters(settings, TOPIC).letters, what="a dead letter")
    assert len(letters) == 1 and letters[0].attempts == 0
    assert letters[0].error.startswith("unparseable event")


@pytest.mark.parametrize("policy", POLICIES)
async def test_a_rebalance_in_the_middle_of_a_batch_loses_and_repeats_nothing(
    setup: tuple[Settings, Publisher], policy: Policy
) -> None:
    settings, publisher = setup
    first, second = Recorder(delay_s=0.1), Recorder(delay_s=0.1)
    group = unique("rebalance")
    events = [failed_job() for _ in range(60)]
    async with running(runner(settings, publisher, policy, first, group)) as member:
        # What the first member has in hand stays there until the group rebalances.
        first.gate = member.revoking
        await publisher.publish_many([(TOPIC, e) for e in events])
        await asyncio.wait_for(first.started.wait(), 30)
        # A second member joins while the first has work in hand: the group rebalances.
        async with running(runner(settings, publisher, policy, second, group)):
            await eventually(lambda: _has_all(events, first, second), 60, "every event handled")
    counts = Counter(first.handled + second.handled)
    assert set(counts) == {e.id for e in events}
    assert [n for n in counts.values() if n > 1] == []
    assert second.handled, "the second member took part"


async def _has(recorder: Recorder, events: list[Envelope[Any]]) -> bool:
    return {e.id for e in events} <= set(recorder.handled)


async def _has_all(events: list[Envelope[Any]], *recorders: Recorder) -> bool:
    handled = {i for r in recorders for i in r.handled}
    return {e.id for e in events} <= handled


def succeeded_job(tenant_id: Any, user: str, key: uuid.UUID) -> Envelope[Any]:
    payload = job_events.JobSucceeded(
        job_id=uuid7(), provider="p", model="m", usage=job_events.TokenUsage(),
        text=f"the answer for {user}", user_id=user,
    )  # fmt: skip
    return Envelope[job_events.JobSucceeded](
        type=job_events.JOB_SUCCEEDED, version=job_events.JobSucceeded.SCHEMA_VERSION,
        tenant_id=tenant_id, actor=Actor(kind="system", id="t"), correlation_id=key,
        payload=payload,
    )  # fmt: skip


@pytest.mark.parametrize("policy", POLICIES)
async def test_a_forgotten_users_event_is_skipped_and_the_next_one_opens(
    setup: tuple[Settings, Publisher], policy: Policy, db: Database
) -> None:
    settings, publisher = setup
    assert publisher.sealer is not None
    tenant = await make_tenant(db)
    key = uuid7()  # one partition: the skipped event sits in front of the next
    gone = succeeded_job(tenant.tenant_id, "gone-user", key)
    kept = succeeded_job(tenant.tenant_id, "kept-user", key)
    await publisher.publish(TOPIC, gone)
    await publisher.publish(TOPIC, kept)
    await publisher.sealer.keys.destroy(tenant.tenant_id, "gone-user")  # type: ignore[arg-type]
    seen: dict[uuid.UUID, Any] = {}

    async def handle(events: Any) -> None:
        for event in events if isinstance(events, list) else [events]:
            seen[event.id] = event.payload

    route = Route(handle, batch=isinstance(policy, Batches))
    group = GroupRunner(
        settings, group="forgetting", topics=[TOPIC], routes={job_events.JOB_SUCCEEDED: route},
        publisher=publisher, policy=policy,
    )  # fmt: skip
    async with running(group):
        await eventually(lambda: _has_key(seen, kept.id), what="the kept user's event handled")
    assert gone.id not in seen and group.forgotten == 1 and group.dead_lettered == 0
    assert seen[kept.id]["text"] == "the answer for kept-user"  # opened before decoding


async def _has_key(seen: dict[uuid.UUID, Any], key: uuid.UUID) -> bool:
    return key in seen
