"""Creating the declared topics (and their dead-letter topics)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from infra.settings import Settings
from schemas import topics as registry


async def create_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create every declared topic that does not exist yet; returns the created names."""
    bootstrap, _, _ = settings.require_services()
    wanted: dict[str, NewTopic] = {}
    for topic in registry.ALL:
        config = {"retention.ms": str(topic.retention_ms)}
        for name, partitions in (
            (topic.name, topic.partitions),
            (topic.dead_letter, 1),
        ):
            full = settings.topic(name)
            partitions = min(partitions, settings.kafka_max_partitions or partitions)
            wanted[full] = NewTopic(full, partitions, 1, topic_configs=config)
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for name, t in wanted.items() if name not in existing]
            if missing:
                # another process may have created them meanwhile
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
            return [t.name for t in missing]
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
