"""Creating the declared topics (and their dead-letter topics); how long they keep records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from infra.errors import TransientError
from infra.settings import Settings
from schemas import topics as registry


async def create_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create every declared topic that does not exist yet; returns the created names."""
    bootstrap, _, _ = settings.require_services()
    wanted: dict[str, NewTopic] = {}
    for topic in registry.ALL:
        config = {
            "retention.ms": str(topic.retention_ms),
            "max.message.bytes": str(settings.kafka_max_message_bytes),
        }
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


@dataclass(frozen=True)
class Retention:
    """How long a topic keeps records (-1: forever), and how long a segment stays open.

    A record leaves only with its whole segment, so it may outlive the
    retention by up to `segment_ms`.
    """

    retention_ms: int
    segment_ms: int


async def topic_retention(settings: Settings, name: str) -> Retention | None:
    """The broker's retention of a declared topic; None when the broker does not know the topic."""
    bootstrap, _, _ = settings.require_services()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        wanted = {"retention.ms": None, "segment.ms": None}
        topic = ConfigResource(ConfigResourceType.TOPIC, settings.topic(name), wanted)
        responses = await admin.describe_configs([topic])
    except KafkaConnectionError as exc:
        raise TransientError(f"kafka: {exc}") from exc
    except KafkaError:
        return None  # a broker that cannot describe configs: the caller uses the declared ones
    finally:
        await admin.close()
    error, _, _, _, entries = responses[0].resources[0][:5]
    values = {entry[0]: int(entry[1]) for entry in entries if entry[1] is not None}
    if error or "retention.ms" not in values:
        return None
    return Retention(values["retention.ms"], values.get("segment.ms", 7 * 24 * 3600 * 1000))
