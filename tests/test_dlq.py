"""Dead letters: parked with their error, re-driven once after the fix, or purged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumers.groups.batch import group as batch
from consumers.groups.integrations import group as integrations
from consumers.groups.memory import group as memory
from consumers.groups.model_calls import group as model_calls
from consumers.groups.model_calls_batch import group as batch_lane
from consumers.groups.webhook_router import group as webhook_router
from infra.errors import PermanentError
from infra.kafka.admin import create_topics
from infra.kafka.dead_letters import DeadLetters
from infra.kafka.policies import Each, RetryPolicy
from infra.kafka.publisher import Publisher
from infra.kafka.routes import Route
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from schemas import batches as batch_events
from schemas import integrations as integration_events
from schemas import jobs as job_events
from schemas import memory as memory_events
from schemas import topics
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.ids import uuid7
from tests.conftest import namespace_settings
from tests.harness import eventually, unique

TOPIC = topics.AI_JOB_LIFECYCLE.name


@dataclass
class FlakyHandler:
    """Refuses events until it is fixed; counts what it handled."""

    fixed: bool = False
    handled: list[uuid.UUID] = field(default_factory=list)

    async def __call__(self, raw: RawEnvelope) -> None:
        if not self.fixed:
            raise PermanentError("bug: cannot handle this yet")
        self.handled.append(raw.id)


@dataclass
class Setup:
    settings: Settings
    publisher: Publisher
    handler: FlakyHandler
    consumer: GroupRunner


@pytest.fixture
async def setup(services: ServiceAddresses) -> AsyncIterator[Setup]:
    settings = namespace_settings(services, unique("dlq") + ".")
    await create_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    handler = FlakyHandler()
    consumer = GroupRunner(
        settings, group="flaky", topics=[TOPIC], routes={job_events.JOB_FAILED: Route(handler)},
        publisher=publisher, policy=Each(4), retry=RetryPolicy(attempts=1, timeout_s=30),
    )  # fmt: skip
    ready = asyncio.Event()
    task = asyncio.create_task(consumer.run(ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    yield Setup(settings, publisher, handler, consumer)
    consumer.stop()
    await task
    await publisher.stop()


async def _publish_failed_job(publisher: Publisher) -> uuid.UUID:
    job_id = uuid7()
    envelope = Envelope[job_events.JobFailed](
        type=job_events.JOB_FAILED, tenant_id=uuid7(), actor=Actor(kind="system", id="test"),
        correlation_id=job_id, payload=job_events.JobFailed(job_id=job_id, error="x"),
    )  # fmt: skip
    await publisher.publish(TOPIC, envelope)
    return envelope.id


async def test_retry_redrives_a_fixed_event_once(setup: Setup) -> None:
    event_id = await _publish_failed_job(setup.publisher)
    dead = DeadLetters(setup.settings, TOPIC)
    letters = await eventually(dead.letters, what="the event in the dead-letter topic")
    assert len(letters) == 1
    assert "cannot handle this yet" in letters[0].error
    assert letters[0].group == setup.settings.group("flaky") and letters[0].attempts == 1
    assert letters[0].source.startswith(setup.settings.topic(TOPIC) + ":")

    setup.handler.fixed = True
    assert [d.offset for d in await dead.retry(setup.publisher)] == [letters[0].offset]
    await eventually(lambda: _true(setup.handler.handled), what="the re-driven event handled")
    assert setup.handler.handled == [event_id]

    # a second retry finds nothing pending and re-drives nothing
    assert await dead.retry(setup.publisher) == []
    assert await dead.letters() == []
    assert [d.pending for d in await dead.letters(include_done=True)] == [False]
    # a later event shows that the consumer is past anything the first retry sent
    second = await _publish_failed_job(setup.publisher)
    await eventually(lambda: _true(second in setup.handler.handled), what="a later event")
    assert setup.handler.handled == [event_id, second]


async def test_purge_discards_pending_dead_letters(setup: Setup) -> None:
    for _ in range(2):
        await _publish_failed_job(setup.publisher)
    dead = DeadLetters(setup.settings, TOPIC)
    await eventually(lambda: _len_is(dead, 2), what="two events in the dead-letter topic")
    assert await dead.purge() == 2
    assert await dead.letters() == []
    assert await dead.retry(setup.publisher) == []
    assert setup.handler.handled == []


async def _true(value: object) -> bool:
    return bool(value)


async def _len_is(dead: DeadLetters, n: int) -> bool:
    return len(await dead.letters()) == n


async def test_a_given_up_event_settles_what_it_started(services: ServiceAddresses) -> None:
    """Any exception, not only ours: the job an event started is failed, never left running."""
    settings = namespace_settings(services, unique("giveup") + ".")
    await create_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    settled: list[tuple[uuid.UUID, str]] = []

    async def handle(raw: RawEnvelope) -> None:
        raise ValueError("Header values may not contain linefeed")  # not one of ours

    async def give_up(raw: RawEnvelope, reason: str) -> None:
        settled.append((raw.id, reason))

    consumer = GroupRunner(
        settings, group="settling", topics=[TOPIC],
        routes={job_events.JOB_FAILED: Route(handle, give_up=give_up)},
        publisher=publisher, policy=Each(4), retry=RetryPolicy(attempts=2, timeout_s=30),
    )  # fmt: skip
    ready = asyncio.Event()
    task = asyncio.create_task(consumer.run(ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        event_id = await _publish_failed_job(publisher)
        await eventually(lambda: _true(settled), what="the given-up event settled")
        letters = await DeadLetters(settings, TOPIC).letters()
    finally:
        consumer.stop()
        await task
        await publisher.stop()
    assert len(settled) == 1 and settled[0][0] == event_id
    assert settled[0][1] == (
        "internal error in settling (ValueError); the request was set aside for an operator"
    )
    assert [letter.error for letter in letters] == [
        "ValueError: Header values may not contain linefeed"
    ]


def test_handlers_that_start_jobs_settle_them_when_given_up() -> None:
    ports: Any = None  # the handlers only close over their ports
    settling = [
        model_calls.group.routes(ports)[job_events.JOB_REQUESTED],
        integrations.group.routes(ports)[integration_events.ACTION_REQUESTED],
        memory.group.routes(ports)[memory_events.MEMORY_REMEMBER],
        webhook_router.group.routes(ports)[integration_events.WEBHOOK_RECEIVED],
        webhook_router.group.routes(ports)[job_events.JOB_SUCCEEDED],
    ]
    assert all(handler.give_up is not None for handler in settling)
    assert batch_lane.group.routes(ports)[job_events.JOB_REQUESTED].give_up is not None
    assert batch.group.routes(ports)[batch_events.BATCH_CREATED].give_up is not None
