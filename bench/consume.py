"""Why the runner is built on aiokafka, not FastStream: consume throughput, measured side by side.

The same topic (8 partitions, JSON events of about 300 bytes) is consumed to the end by
- `aiokafka`: a bare `getmany` loop that commits after each fetch (the floor: no handler);
- `ayush`: the project's runner (`infra.kafka.runner`) with `Each(concurrency=64)`: one
  handler call per event, many at once, each partition committed in order up to its lowest
  unfinished event;
- `faststream_*`: FastStream's Kafka subscriber in the modes it offers: its default
  (`ack_first`: the offset is committed when the message arrives, before the handler ran, so
  a crash loses it), `ack` (commit after the handler: one message at a time), `ack` with
  `max_workers` (its concurrent manual-commit mode) and `batch` (a list per call, acked after);
each twice: with a handler that returns at once (the pipeline's own cost) and with one that
waits `--io-ms` (a database write's latency; where concurrency shows).

Prints one JSON object of events per second for each, and each one's ratio to `aiokafka`.

    uv run --with 'faststream[kafka]' python bench/consume.py [--events 5000]

FastStream is not a dependency of the project: `--with` adds it for this run only.
Uses the service addresses in the environment, else starts local services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.services import bench_services
from infra.kafka.policies import Each
from infra.kafka.publisher import Publisher
from infra.kafka.routes import ANY, Route
from infra.kafka.runner import GroupRunner
from infra.settings import Settings

PARTITIONS = 8
Consume = Callable[[Settings, str, int, float], Awaitable[None]]


async def make_topic(settings: Settings, count: int) -> str:
    bootstrap, _, _ = settings.require_services()
    topic = f"bench.consume.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        body = {"type": "bench.event", "payload": {"text": "x" * 220}}
        pending = [
            await producer.send(topic, json.dumps({**body, "n": i}).encode(), key=str(i).encode())
            for i in range(count)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return topic


async def raw_aiokafka(settings: Settings, topic: str, count: int, io_s: float) -> None:
    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        seen = 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    json.loads(record.value or b"{}")
                seen += len(records)
            await consumer.commit()
    finally:
        await consumer.stop()


async def ayush_runner(settings: Settings, topic: str, count: int, io_s: float) -> None:
    done = asyncio.Event()
    seen = 0

    async def handle(event: Any) -> None:
        nonlocal seen
        if io_s:
            await asyncio.sleep(io_s)
        seen += 1
        if seen >= count:
            done.set()

    publisher = Publisher(settings)  # for dead letters; none are expected here
    await publisher.start()
    runner = GroupRunner(
        settings, group=f"ayush-{uuid.uuid4().hex[:6]}", topics=[topic],
        routes={ANY: Route(handle, decode=lambda r: json.loads(r.value or b"{}"))},
        publisher=publisher, policy=Each(concurrency=64),
    )  # fmt: skip
    running = asyncio.create_task(runner.run())
    try:
        await done.wait()
    finally:
        runner.stop()
        await running
        await publisher.stop()


def faststream(mode: str) -> Consume:
    async def consume(settings: Settings, topic: str, count: int, io_s: float) -> None:
        from faststream.kafka import KafkaBroker

        bootstrap, _, _ = settings.require_services()
        from faststream.middlewares import AckPolicy

        broker = KafkaBroker(bootstrap, logger=None)
        done = asyncio.Event()
        seen = 0

        def count_one(n: int) -> None:
            nonlocal seen
            seen += n
            if seen >= count:
                done.set()

        options: dict[str, Any] = {
            "group_id": f"fs-{mode}-{uuid.uuid4().hex[:6]}",
            "auto_offset_reset": "earliest",
        }
        if mode != "default":
            options["ack_policy"] = AckPolicy.ACK
        if mode == "workers":
            options["max_workers"] = 16
        if mode == "batch":

            @broker.subscriber(topic, batch=True, max_records=500, **options)
            async def on_batch(messages: list[dict[str, Any]]) -> None:
                if io_s:
                    await asyncio.sleep(io_s)
                count_one(len(messages))

        else:

            @broker.subscriber(topic, **options)
            async def on_one(message: dict[str, Any]) -> None:
                if io_s:
                    await asyncio.sleep(io_s)
                count_one(1)

        await broker.start()
        try:
            await done.wait()
        finally:
            await broker.stop()

    return consume


async def measure(
    consume: Consume, settings: Settings, topic: str, count: int, io_s: float
) -> float:
    started = time.perf_counter()
    await consume(settings, topic, count, io_s)
    return count / (time.perf_counter() - started)


async def run(
    settings: Settings, events: int, io_ms: float, with_faststream: bool = True
) -> dict[str, Any]:
    contenders: dict[str, Consume] = {"aiokafka": raw_aiokafka, "ayush": ayush_runner}
    if with_faststream:
        contenders |= {
            "faststream_ack_first": faststream("default"),
            "faststream_ack": faststream("ack"),
            "faststream_ack_workers_16": faststream("workers"),
            "faststream_batch": faststream("batch"),
        }
    figures: dict[str, Any] = {"events": events, "partitions": PARTITIONS, "io_ms": io_ms}
    for load, io_s in (("instant", 0.0), ("io", io_ms / 1000)):
        # Waiting handlers are slow one at a time: fewer events keep the run short.
        count = events if io_s == 0 else min(events, 2_000)
        topic = await make_topic(settings, count)
        rates = {name: round(await measure(c, settings, topic, count, io_s), 1)
                 for name, c in contenders.items()}  # fmt: skip
        floor = rates["aiokafka"]
        figures[load] = {
            "events_per_s": rates,
            "ratio_to_aiokafka": {k: round(v / floor, 3) for k, v in rates.items()},
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--io-ms", type=float, default=5.0)
    args = parser.parse_args()
    try:
        import faststream  # noqa: F401

        with_faststream = True
    except ImportError:
        with_faststream = False
        print(
            "FastStream is not installed here, so it is left out: run `uv run --with "
            "'faststream[kafka]' python bench/consume.py` to include it",
            file=sys.stderr,
        )
    with bench_services(prepared=False) as services:
        # Every contender reads the same bare topic name: no prefix for the runner to add.
        settings = services.settings.model_copy(update={"topic_prefix": ""})
        figures = asyncio.run(run(settings, args.events, args.io_ms, with_faststream))
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
