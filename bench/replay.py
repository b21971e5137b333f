"""Replay throughput: events/s exported from Kafka and from the S3 archive, next to the raw
consume rate of the same topic measured in the same run.

    uv run python -m bench.replay [--events 20000]

Uses the service addresses in the environment; starts what is missing (moto
for S3, and Kafka/Postgres/Redis when unset). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from ayush import replay
from ayush.worker import build_runner
from bench.services import bench_services
from infra.kafka.history import History
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7

TOPIC = topics.AI_JOB_LIFECYCLE.name


async def publish(settings: Settings, n: int) -> None:
    publisher = Publisher(settings)
    await publisher.start()
    try:
        tenant = uuid7()
        for start in range(0, n, 1000):
            items: list[tuple[str, Envelope[Any]]] = []
            for i in range(start, min(start + 1000, n)):
                job_id = uuid7()
                payload = job_events.JobFailed(job_id=job_id, error=f"bench event {i}")
                items.append(
                    (
                        TOPIC,
                        Envelope[Any](
                            type=job_events.JOB_FAILED,
                            tenant_id=tenant,
                            actor=Actor(kind="system", id="bench"),
                            correlation_id=job_id,
                            payload=payload,
                        ),
                    )
                )
            await publisher.publish_many(items)
    finally:
        await publisher.stop()


async def archive_all(settings: Settings, n: int) -> float:
    async with AsyncExitStack() as stack:
        consumer = await build_runner(settings, "archive", stack)
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run())
        while consumer.handled < n:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        consumer.stop()
        await task
    return elapsed


async def raw_consume(settings: Settings, n: int) -> float:
    async with History(settings) as history:
        where = await history.locate(settings.topic(TOPIC))
    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(list(where.ends))
        for tp in where.ends:
            consumer.seek(tp, where.starts[tp])
        started, seen = time.perf_counter(), 0
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            seen += sum(len(records) for records in batch.values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def export_rate(settings: Settings, query: replay.Query, out: Path, n: int) -> float:
    started = time.perf_counter()
    report = await replay.export(settings, query, out)
    elapsed = time.perf_counter() - started
    if report.matched != n:
        raise RuntimeError(f"{query.source}: exported {report.matched} of {n} events")
    return n / elapsed


async def measure(settings: Settings, n: int, work: Path) -> dict[str, Any]:
    begin = datetime.now(UTC) - timedelta(seconds=5)
    await publish(settings, n)
    archive_s = await archive_all(settings, n)
    raw = await raw_consume(settings, n)
    query = replay.Query(topics=[TOPIC], start=begin, end=datetime.now(UTC) + timedelta(minutes=1))
    from_kafka = replace(query, source="kafka")
    from_archive = replace(query, source="archive")
    kafka = await export_rate(settings, from_kafka, work / "kafka.jsonl", n)
    archived = await export_rate(settings, from_archive, work / "archive.jsonl", n)
    return {
        "replay_kafka_per_s": round(kafka),
        "replay_archive_per_s": round(archived),
        "raw_consume_per_s": round(raw),
        "archive_write_per_s": round(n / archive_s),
        "events": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with bench_services() as services:
        prefix = services.settings.topic_prefix
        settings = services.settings.model_copy(update={"archive_prefix": prefix})
        result = asyncio.run(measure(settings, args.events, services.work))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
