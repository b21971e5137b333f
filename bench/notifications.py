"""Outbound webhooks end to end: events in Kafka -> the notifications worker -> a receiver.

Starts an ingress (to subscribe) and the notifications worker (with services from the
environment, else a local stack) and a local receiver that answers 200 at once. Publishes
`--events` `ai.job.succeeded` events of one tenant, as fast as Kafka takes them, to a
subscription of `job.*`, and prints one JSON object:
- `deliveries_per_s`: events delivered (signed, answered) per second, first publish to
  last delivery;
- `added_delay_ms_p50` / `_p99`: from an event's publish to its delivery at the receiver;
- `baseline`: the same receiver sent the same signed bodies straight from this process
  (no Kafka, no worker), at the worker's concurrency per endpoint: the floor the worker
  adds its delay to.

    uv run python bench/notifications.py [--events 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ayush.keys import create_key
from bench.services import bench_services
from bench.stats import percentile
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from infra.vault import Vault
from infra.webhook_signing import headers, new_secret
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from schemas.keys import NewKey
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.harness import Platform

CONCURRENCY = 4  # the worker's default per endpoint (AYUSH_WEBHOOK_ENDPOINT_CONCURRENCY)


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 1)


def job_event(tenant_id: uuid.UUID) -> Envelope[job_events.JobSucceeded]:
    job_id = uuid7()
    return Envelope[job_events.JobSucceeded](
        type=job_events.JOB_SUCCEEDED, tenant_id=tenant_id,
        actor=Actor(kind="system", id="bench"), correlation_id=job_id,
        payload=job_events.JobSucceeded(
            job_id=job_id, provider="openai", model="gpt-bench",
            usage=job_events.TokenUsage(input_tokens=10, output_tokens=20),
        ),
    )  # fmt: skip


async def through_worker(
    settings: Settings, url: str, key: str, tenant_id: uuid.UUID, receiver: WebhookReceiver,
    events: int,
) -> dict[str, Any]:  # fmt: skip
    async with httpx.AsyncClient(base_url=url, timeout=60) as api:
        created = await api.post(
            "/v1/webhook-subscriptions",
            json={"url": receiver.plan("worker", "ok"), "event_types": ["job.*"]},
            headers={"Authorization": f"Bearer {key}"},
        )
        if created.status_code != 201:
            raise RuntimeError(f"subscribing: {created.status_code} {created.text}")
    publisher = Publisher(settings)
    await publisher.start()
    sent: dict[str, float] = {}
    try:
        started = time.monotonic()
        for _ in range(events):
            event = job_event(tenant_id)
            sent[str(event.payload.job_id)] = time.monotonic()
            await publisher.publish(topics.AI_JOB_LIFECYCLE.name, event)
        published = time.monotonic() - started
        deadline = time.monotonic() + 120 + events * 0.05
        while len(receiver.received["worker"]) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(receiver.received['worker'])}/{events} delivered")
            await asyncio.sleep(0.05)
    finally:
        await publisher.stop()
    got = receiver.received["worker"]
    delays = [r.at - sent[orjson.loads(r.body)["data"]["job_id"]] for r in got]
    return {
        "delivered": len(got),
        "published_per_s": round(events / published, 1),
        "deliveries_per_s": round(len(got) / (max(r.at for r in got) - started), 1),
        "added_delay_ms_p50": ms(delays, 0.5),
        "added_delay_ms_p99": ms(delays, 0.99),
    }


async def baseline(receiver: WebhookReceiver, tenant_id: uuid.UUID, events: int) -> dict[str, Any]:
    """The same signed bodies posted straight to the receiver, CONCURRENCY at a time."""
    url, secret = receiver.plan("direct", "ok"), new_secret()
    latencies: list[float] = []
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=30) as http:

        async def post() -> None:
            event = job_event(tenant_id)
            body = orjson.dumps(
                {"type": "job.succeeded", "data": event.payload.model_dump(mode="json")}
            )
            async with limit:
                begun = time.monotonic()
                signed = headers([secret], f"msg_{event.id.hex}", int(time.time()), body)
                (await http.post(url, content=body, headers=signed)).raise_for_status()
                latencies.append(time.monotonic() - begun)

        started = time.monotonic()
        await asyncio.gather(*(post() for _ in range(events)))
        took = time.monotonic() - started
    return {
        "deliveries_per_s": round(events / took, 1),
        "post_ms_p50": ms(latencies, 0.5),
        "post_ms_p99": ms(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    keys = Vault.new_key_setting("bench")
    with bench_services(encryption_keys=keys) as services, WebhookReceiver() as receiver:
        env = services.env(
            AYUSH_ENCRYPTION_KEYS=keys, AYUSH_CONNECTOR_ALLOW="127.0.0.1",
            AYUSH_LOG_LEVEL="WARNING",
        )  # fmt: skip
        platform = Platform(env, services.work / "logs")
        try:
            platform.start_ingress()
            platform.start_worker("notifications")
            spec = NewKey(name="bench", role="admin")
            _, key, secret = asyncio.run(
                create_key(services.settings, f"bench-{uuid.uuid4().hex[:8]}", spec)
            )
            worker = asyncio.run(
                through_worker(
                    services.settings, platform.url, secret, key.tenant_id, receiver, args.events
                )
            )
            direct = asyncio.run(baseline(receiver, key.tenant_id, args.events))
            print(json.dumps({"events": args.events, **worker, "baseline": direct}))
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
