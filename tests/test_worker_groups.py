"""Every group as `ayush worker` builds it: dead letters for what does not decode, and
the same series on its /metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from ayush.groups import GROUPS
from ayush.worker import build_runner
from infra.db.engine import Database
from infra.kafka.admin import create_topics
from infra.kafka.codec import encode
from infra.kafka.dead_letters import DeadLetters
from infra.kafka.policies import Batches, Each, Policy
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from schemas import topics
from tests.conftest import make_tenant, namespace_settings
from tests.harness import eventually, unique
from tests.usage_tools import usage_event


@asynccontextmanager
async def worker(
    settings: Settings, group: str, policy: Policy | None = None
) -> AsyncIterator[GroupRunner]:
    """The group as `ayush worker` builds it; on `policy` instead of its own when given."""
    async with AsyncExitStack() as stack:
        runner = await build_runner(settings, group, stack)
        if policy is not None:
            runner.policy = policy
        ready = asyncio.Event()
        task = asyncio.create_task(runner.run(ready=ready, drain_timeout_s=5))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            yield runner
        finally:
            runner.stop()
            await task


@pytest.fixture
async def settings(services: ServiceAddresses) -> Settings:
    settings = namespace_settings(services, unique("groups") + ".")
    await create_topics(settings)
    return settings


async def _garbage(settings: Settings, topic: str, key: bytes | None = None) -> None:
    publisher = Publisher(settings)
    await publisher.start()
    try:
        key = key or str(uuid.uuid4()).encode()
        await publisher.send(settings.topic(topic), b"\x00 not an event", key=key, headers=[])
    finally:
        await publisher.stop()


POLICIES = [pytest.param(Each(4), id="each"), pytest.param(Batches(50, 0.05), id="batches")]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("group", ["usage", "archive"])
async def test_an_unparseable_event_is_dead_lettered_and_the_group_continues(
    settings: Settings, db: Database, group: str, policy: Policy
) -> None:
    tenant = await make_tenant(db)
    topic = topics.USAGE_RECORDED.name
    event = usage_event(uuid.UUID(str(tenant.tenant_id)))
    async with worker(settings, group, policy) as runner:
        # on the partition of the event behind it
        await _garbage(settings, topic, key=encode(event)[0])
        publisher = Publisher(settings)
        await publisher.start()
        try:
            await publisher.publish(topic, event)
        finally:
            await publisher.stop()
        await eventually(lambda: _true(runner.handled >= 1), 30, "the next event handled")
        letters = await eventually(DeadLetters(settings, topic).letters, what="a dead letter")
    assert [(letter.attempts, letter.group) for letter in letters] == [(0, settings.group(group))]
    assert letters[0].error.startswith("unparseable event")


async def test_every_group_shows_lag_and_handler_series_on_its_metrics(
    settings: Settings,
) -> None:
    async with AsyncExitStack() as stack:
        runners = {name: await stack.enter_async_context(worker(settings, name)) for name in GROUPS}
        for name in GROUPS:
            await _garbage(settings, GROUPS[name].topics[0])
        for name, runner in runners.items():
            metrics = runner.publisher.metrics
            assert metrics is not None
            server = metrics.serve(0, "127.0.0.1")
            stack.callback(server.close)
            url = f"http://127.0.0.1:{server.port}/metrics"
            label = f'group="{settings.group(name)}"'

            async def shown(url: str = url, label: str = label) -> bool:
                async with httpx.AsyncClient() as client:
                    lines = (await client.get(url)).text.splitlines()
                found = {line.split("{")[0] for line in lines if label in line}
                return {"ayush_consumer_lag", "ayush_handler_seconds_count"} <= found

            await eventually(shown, 30, f"the lag and handler series of {name}")


async def _true(value: bool) -> bool:
    return value
