"""How fast one usage worker aggregates `usage.recorded`, next to raw aiokafka on the same topic.

Prints one JSON object: usage_events_per_s (events claimed, aggregated into
Postgres, settled in Redis and committed, by one worker), raw_consume_per_s
(an aiokafka consumer that only fetches the same records) and their ratio.

    uv run python bench/usage.py [--events 120000]

Uses the service addresses in the environment, else starts local services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ayush.dev import prepare
from ayush.worker import tune_gc
from consumers import usage
from infra.budget_holds import BudgetHolds
from infra.db.engine import Database
from infra.kafka.codec import encode
from infra.kafka.policies import Batches
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.local_stack import LocalStack
from infra.settings import Settings
from schemas import topics
from tests.usage_tools import usage_event


async def produce(settings: Settings, count: int) -> None:
    bootstrap, _, _ = settings.require_services()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    # 20 tenants with 3 keys and 10 users each, 4 models: a day of a busy platform.
    tenants = [uuid.uuid4() for _ in range(20)]
    keys = {t: [uuid.uuid4() for _ in range(3)] for t in tenants}
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-4"]
    try:
        pending = []
        for i in range(count):
            tenant = random.choice(tenants)
            event = usage_event(
                tenant,
                key_id=random.choice(keys[tenant]),
                user_id=f"user-{i % 10}",
                model=random.choice(models),
                input_tokens=random.randint(10, 2000),
                output_tokens=random.randint(10, 800),
                cost=str(Decimal(random.randint(1, 10_000)) / Decimal(10**8)),
            )
            key, value, headers = encode(event)
            topic = settings.topic(topics.USAGE_RECORDED.name)
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_consume(settings: Settings, count: int) -> float:
    """Seconds an aiokafka consumer takes to fetch `count` records from the start."""
    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        topic = settings.topic(topics.USAGE_RECORDED.name)
        partitions = [TopicPartition(topic, p) for p in range(topics.USAGE_RECORDED.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def usage_worker(settings: Settings, count: int) -> float:
    """Seconds one usage worker takes to aggregate and commit `count` events."""
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=2)
    holds = BudgetHolds(settings, max_connections=4)
    publisher = Publisher(settings)
    await publisher.start()
    worker = GroupRunner(
        settings,
        group=usage.GROUP,
        topics=usage.TOPICS,
        routes=usage.handlers(usage.Ports(settings, db, holds, publisher)),
        publisher=publisher,
        policy=Batches(settings.usage_batch_max),
    )
    tune_gc()  # as `ayush worker` does
    ready = asyncio.Event()
    runner = asyncio.create_task(worker.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        started = time.perf_counter()
        while worker.handled < count:
            if runner.done():
                runner.result()
            await asyncio.sleep(0.01)
        return time.perf_counter() - started
    finally:
        worker.stop()
        await runner
        await publisher.stop()
        await holds.close()
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    # Several batches of the default size, so fetching, writing and committing overlap.
    parser.add_argument("--events", type=int, default=120_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack.start(Settings(), Path(tmp))
        try:
            prefix = f"bench{uuid.uuid4().hex[:8]}."
            settings = stack.addresses.apply(Settings(topic_prefix=prefix))
            prepare(settings)
            asyncio.run(produce(settings, args.events))
            # Raw before and after the worker: the load of a shared machine drifts.
            raw_before = asyncio.run(raw_consume(settings, args.events))
            usage_s = asyncio.run(usage_worker(settings, args.events))
            raw_s = (raw_before + asyncio.run(raw_consume(settings, args.events))) / 2
        finally:
            stack.stop()
    raw_rate = args.events / raw_s
    usage_rate = args.events / usage_s
    print(json.dumps({
        "events": args.events,
        "usage_events_per_s": round(usage_rate),
        "raw_consume_per_s": round(raw_rate),
        "ratio": round(usage_rate / raw_rate, 3),
        "batch_max": settings.usage_batch_max,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
