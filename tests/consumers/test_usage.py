"""The usage group: exact totals under redelivery, replay and a crash before the commit."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from consumers.groups.usage.group import group
from infra.db.budgets import set_budget
from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from schemas import topics
from schemas.usage import BUDGET_THRESHOLD_CROSSED
from tests.conftest import make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually
from tests.kafka_tools import read_topic
from tests.usage_tools import (
    claimed_count,
    committed_total,
    end_total,
    publish_all,
    reset_group,
    tenant_totals,
    usage_event,
)

# Worker restarts and a group rebalance in each test: slow on a busy machine.
pytestmark = pytest.mark.timeout(300)


class UsageWorld:
    def __init__(self, platform: Platform, settings: Any, publisher: Publisher) -> None:
        self.platform = platform
        self.settings = settings
        self.publisher = publisher


@pytest.fixture(scope="module")
def usage_platform(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, Any]]:
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("usage-logs"))
    platform.env["AYUSH_USAGE_BATCH_MAX"] = "500"
    try:
        yield platform, settings
    finally:
        platform.stop()


@pytest.fixture
async def world(usage_platform: tuple[Platform, Any]) -> AsyncIterator[UsageWorld]:
    platform, settings = usage_platform
    publisher = Publisher(settings)
    await publisher.start()
    try:
        yield UsageWorld(platform, settings, publisher)
    finally:
        await publisher.stop()


def expected(events: list[Any]) -> tuple[int, int, int, Decimal]:
    payloads = [e.payload for e in events]
    return (
        len(payloads),
        sum(p.input_tokens for p in payloads),
        sum(p.output_tokens for p in payloads),
        sum((p.cost_usd for p in payloads), Decimal(0)),
    )


async def wait_totals(db: Database, tenant_id: uuid.UUID, want: tuple[Any, ...]) -> None:
    async def probe() -> bool:
        return await tenant_totals(db, tenant_id) == want

    await eventually(probe, 60, f"usage totals {want}")


async def test_redelivered_and_replayed_events_count_once(world: UsageWorld, db: Database) -> None:
    tenant = await make_tenant(db)
    tid = uuid.UUID(str(tenant.tenant_id))
    events = [
        usage_event(tid, user_id=f"u{i % 3}", model=("gpt-fake", "claude-fake")[i % 2],
                    input_tokens=i, output_tokens=2 * i, cost=f"0.0000{i % 10}1")
        for i in range(300)
    ]  # fmt: skip
    worker = world.platform.start_worker(group.name)
    await publish_all(world.publisher, events)
    # Redelivery: a third of the events arrive again, interleaved with new ones.
    await publish_all(world.publisher, events[::3])
    # Two records that cannot be counted: garbage, and a usage with a bad token count.
    topic = world.settings.topic(topics.USAGE_RECORDED.name)
    await world.publisher.send(topic, b"{not json", key=None, headers=[])
    bad = usage_event(tid).model_dump(mode="json")
    bad["payload"]["input_tokens"] = "lots"
    await world.publisher.send(
        topic, json.dumps(bad).encode(), key=None, headers=[("ayush-type", b"usage.recorded")]
    )
    await wait_totals(db, tid, expected(events))

    async def dead_lettered() -> list[Any] | None:
        parked = await read_topic(world.settings, topics.USAGE_RECORDED.dead_letter)
        return parked if len(parked) >= 2 else None

    parked = await eventually(dead_lettered, 30, "two dead-lettered records")
    errors = sorted(dict(r.headers)["ayush-dlq-error"].decode()[:25] for r in parked)
    assert len(parked) == 2 and all(e.startswith("unparseable event") for e in errors)

    # Replay: the whole topic from offset 0 into the same group, and once more on top.
    worker.terminate()
    await reset_group(world.settings, group.name, topics.USAGE_RECORDED.name)
    world.platform.start_worker(group.name)
    await publish_all(world.publisher, events)
    end = await end_total(world.settings, topics.USAGE_RECORDED.name)

    async def replayed() -> bool:
        return await committed_total(world.settings, group.name) >= end

    await eventually(replayed, 60, "the replay to be consumed")
    assert await tenant_totals(db, tid) == expected(events)


@pytest.mark.timeout(300)  # each try starts a worker; most runs need one or two
async def test_sigkill_between_db_write_and_offset_commit_keeps_totals_exact(
    world: UsageWorld, db: Database
) -> None:
    tenant = await make_tenant(db)
    tid = uuid.UUID(str(tenant.tenant_id))
    base_committed = await committed_total(world.settings, group.name)
    events: list[Any] = []
    caught_in_window = False
    # The window is a few milliseconds wide: a kill lands in it on some tries, not all.
    for _ in range(40):
        more = [usage_event(tid, input_tokens=i % 7, cost="0.00000003") for i in range(3000)]
        await publish_all(world.publisher, more)
        events += more
        fresh = {e.id for e in more}
        worker = world.platform.start_worker(group.name)
        # Kill as soon as a batch is in Postgres: its offset commit is moments away.
        while await claimed_count(db, fresh) == 0:
            assert worker.alive(), worker.tail()
        worker.kill()  # SIGKILL: no shutdown hook runs
        written = await claimed_count(db, {e.id for e in events})
        committed = await committed_total(world.settings, group.name) - base_committed
        if written > committed:
            caught_in_window = True  # its last batch was in Postgres, its offsets were not
            break
    assert caught_in_window, "no kill landed between the database write and the offset commit"
    world.platform.start_worker(group.name)
    await wait_totals(db, tid, expected(events))


async def test_budget_thresholds_are_announced_once_per_period(
    world: UsageWorld, db: Database
) -> None:
    tenant = await make_tenant(db)
    tid = uuid.UUID(str(tenant.tenant_id))
    await set_budget(db, tid, "tenant", tid, Decimal("0.0001"))
    world.platform.start_worker(group.name)
    # 40%, 80%, 120%, 160%: the 80% and the 100% lines are each crossed once.
    for step in range(1, 5):
        await publish_all(world.publisher, [usage_event(tid, cost="0.00004")])
        await wait_totals(db, tid, (step, 10 * step, 5 * step, Decimal("0.00004") * step))

    async def alerts() -> list[Any] | None:
        records = await read_topic(world.settings, topics.USAGE_BUDGET.name)
        mine = [decode_raw(r.value) for r in records]
        mine = [e for e in mine if e.tenant_id == tid and e.type == BUDGET_THRESHOLD_CROSSED]
        return mine if len(mine) >= 2 else None

    found = await eventually(alerts, 30, "two threshold events")
    assert sorted(e.payload["threshold_pct"] for e in found) == [80, 100]
    assert {e.payload["scope"] for e in found} == {"tenant"}
    assert all(e.payload["limit_usd"] == "0.00010000" for e in found)


@pytest.fixture(autouse=True)
def _one_worker_after(usage_platform: tuple[Platform, Any]) -> Iterator[None]:
    """Each test leaves no worker behind, so the next one decides what runs."""
    yield
    platform, _ = usage_platform
    for proc in platform.procs:
        if proc.name == group.name:
            proc.terminate(15)
