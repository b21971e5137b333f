"""Reading a whole topic, for assertions about what was published; dropping test namespaces."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from infra.kafka.sealing import Sealer
from infra.settings import Settings


async def read_topic(
    settings: Settings, topic: str, *, raw: bool = False
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in the (prefixed) topic, from the beginning to the end offsets; users'
    sealed payloads opened with the settings' key ring (those of a forgotten user stay
    sealed) unless `raw`: then as they are in the topic."""
    records = await _read(settings, topic)
    sealer = None if raw else Sealer.from_settings(settings)
    if sealer is None:
        return records
    try:
        opened = []
        for record in records:
            value = await sealer.open_value(record.value)
            changed = value is not None and value is not record.value
            opened.append(dataclasses.replace(record, value=value) if changed else record)
        return opened
    finally:
        await sealer.close()


async def _read(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        full = settings.topic(topic)
        # The consumer's own metadata only covers subscribed topics; ask for all.
        cluster = await consumer._client.fetch_all_metadata()
        numbers = cluster.partitions_for_topic(full) or set()
        partitions = [TopicPartition(full, p) for p in numbers]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, items in batch.items():
                records.extend(items)
                if items and items[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def drop_namespaces(bootstrap: str, prefixes: Iterable[str]) -> int:
    """Delete every topic under the given prefixes; returns how many."""
    wanted = tuple(prefixes)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(wanted)]
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start : start + 200])
        return len(names)
    finally:
        await admin.close()
