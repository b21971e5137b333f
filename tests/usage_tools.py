"""Publishing usage events and reading the usage projection, for tests."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7


def usage_event(
    tenant_id: uuid.UUID,
    *,
    key_id: uuid.UUID | None = None,
    user_id: str | None = None,
    model: str = "gpt-fake",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cost: str = "0.00002",
) -> Envelope[Any]:
    job_id = uuid7()
    return Envelope[Any](
        type=job_events.USAGE_RECORDED,
        tenant_id=tenant_id,
        actor=Actor(kind="system", id="model-calls"),
        correlation_id=job_id,
        payload=job_events.UsageRecorded(
            job_id=job_id, api_key_id=key_id, user_id=user_id, provider="openai", model=model,
            input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=Decimal(cost),
        ),
    )  # fmt: skip


async def publish_all(publisher: Publisher, events: list[Envelope[Any]]) -> None:
    for start in range(0, len(events), 1000):
        chunk = events[start : start + 1000]
        await publisher.publish_many([(topics.USAGE_RECORDED.name, e) for e in chunk])


async def tenant_totals(db: Database, tenant_id: uuid.UUID) -> tuple[int, int, int, Decimal]:
    """events, input tokens, output tokens, cost of a tenant over all days."""
    async with db.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT COALESCE(SUM(events), 0), COALESCE(SUM(input_tokens), 0), "
                    "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0) "
                    "FROM usage_daily WHERE tenant_id = :t"
                ),
                {"t": tenant_id},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), Decimal(row[3])


async def claimed_count(db: Database, event_ids: set[uuid.UUID]) -> int:
    """How many of these usage events the usage group has claimed."""
    async with db.session() as session:
        row = await session.execute(
            text("SELECT count(*) FROM usage_events_seen WHERE event_id = ANY(:ids)"),
            {"ids": list(event_ids)},
        )
        return int(row.scalar_one())


async def committed_total(settings: Settings, group: str) -> int:
    """The sum of a group's committed offsets over all partitions."""
    bootstrap, _, _ = settings.require_services()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.group(group))
        return sum(max(meta.offset, 0) for meta in offsets.values())
    finally:
        await admin.close()


async def end_total(settings: Settings, topic: str) -> int:
    """The sum of a topic's end offsets: where a caught-up group has committed to."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        full = settings.topic(topic)
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(full, p) for p in cluster.partitions_for_topic(full) or ()]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def reset_group(settings: Settings, group: str, topic: str) -> None:
    """Move a stopped group back to the start of a topic: a whole-topic replay."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=settings.group(group), enable_auto_commit=False
    )
    await consumer.start()
    try:
        full = settings.topic(topic)
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(full, p) for p in cluster.partitions_for_topic(full) or ()]
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()
