"""One job end to end: POST /v1/jobs until the SSE stream says `done`, sequentially.

Prints JSON: p50/p99 of the whole round trip for the `local-echo` model (no
provider latency), and, measured in the same run, the raw Kafka round trip
(produce, acknowledged, consumed by a waiting consumer) that bounds it.

    uv run python bench/e2e.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.services import bench_key, bench_services
from bench.stats import percentile
from infra.settings import Settings
from tests.harness import Platform


async def job_round_trips(url: str, key: str, jobs: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"kind": "chat", "model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}
    timings = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(jobs):
            started = time.perf_counter()
            async with http.post(f"{url}/v1/jobs", json=body) as response:
                if response.status != 202:
                    raise RuntimeError(f"POST /v1/jobs: {response.status} {await response.text()}")
                job_id = (await response.json())["id"]
            async with http.get(f"{url}/v1/jobs/{job_id}/events") as stream:
                async for line in stream.content:
                    if line.startswith(b"event: done"):
                        break
            timings.append((time.perf_counter() - started) * 1000)
    return timings


async def kafka_round_trips(settings: Settings, count: int) -> list[float]:
    bootstrap, _, _ = settings.require_services()
    topic = settings.topic("ai.job.lifecycle")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve "end" now, before the first send
        timings = []
        for _ in range(count):
            marker = uuid.uuid4().bytes
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"{}", key=marker)
            found = False
            while not found:
                batch = await consumer.getmany(timeout_ms=1000)
                found = any(r.key == marker for records in batch.values() for r in records)
            timings.append((time.perf_counter() - started) * 1000)
        return timings
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with bench_services() as services:
        settings = services.settings
        env = services.env(AYUSH_LOCAL_ECHO_DELAY_S="0", AYUSH_LOG_LEVEL="WARNING")
        os.environ.update(env)
        key = asyncio.run(bench_key(settings, "admin"))
        platform = Platform(env, services.work / "logs")
        try:
            platform.start_ingress()
            platform.start_worker("model-calls")
            print("measuring …", file=sys.stderr)
            asyncio.run(job_round_trips(platform.url, key, 10))  # warm up
            jobs = asyncio.run(job_round_trips(platform.url, key, args.jobs))
            kafka = asyncio.run(kafka_round_trips(settings, args.jobs))
        finally:
            platform.stop()
        print(json.dumps({
            "kafka": services.addresses.kafka_flavour,
            "jobs": args.jobs,
            "job_e2e_p50_ms": round(statistics.median(jobs), 2),
            "job_e2e_p99_ms": round(percentile(jobs, 0.99), 2),
            "raw_kafka_round_trip_p50_ms": round(statistics.median(kafka), 2),
            "raw_kafka_round_trip_p99_ms": round(percentile(kafka, 0.99), 2),
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
