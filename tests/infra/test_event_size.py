"""Events up to the configured size go through Kafka; a larger one is refused as too large."""

from __future__ import annotations

import pytest

from infra.errors import EventTooLarge
from infra.kafka.admin import create_topics
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.conftest import namespace_settings
from tests.harness import unique
from tests.kafka_tools import read_topic

MIB = 1024 * 1024


def _failed_job(error: str) -> Envelope[job_events.JobFailed]:
    job_id = uuid7()
    return Envelope[job_events.JobFailed](
        type=job_events.JOB_FAILED, tenant_id=uuid7(), actor=Actor(kind="system", id="test"),
        correlation_id=job_id, payload=job_events.JobFailed(job_id=job_id, error=error),
    )  # fmt: skip


async def test_an_event_over_kafkas_default_megabyte_is_stored_and_read_back(
    services: ServiceAddresses,
) -> None:
    settings = namespace_settings(services, unique("size") + ".")
    await create_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish(topics.AI_JOB_LIFECYCLE.name, _failed_job("x" * (3 * MIB)))
    finally:
        await publisher.stop()
    [record] = await read_topic(settings, topics.AI_JOB_LIFECYCLE.name)
    assert record.value is not None and len(record.value) > 3 * MIB


async def test_an_event_over_the_limit_is_refused_as_too_large(
    services: ServiceAddresses,
) -> None:
    settings = namespace_settings(services, unique("size") + ".").model_copy(
        update={"kafka_max_message_bytes": 2 * MIB}
    )
    await create_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        with pytest.raises(EventTooLarge) as refused:
            await publisher.publish(topics.AI_JOB_LIFECYCLE.name, _failed_job("x" * (3 * MIB)))
    finally:
        await publisher.stop()
    assert refused.value.status == 413
