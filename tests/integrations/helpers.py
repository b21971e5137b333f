"""Small steps the integration tests share."""

from __future__ import annotations

from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from tests.conftest import TenantKey
from tests.fakes.vendors import VendorCall
from tests.harness import eventually
from tests.integrations.conftest import Integrations
from tests.kafka_tools import read_topic


async def connect(
    api: httpx.AsyncClient, tenant: TenantKey, connector: str, credentials: dict[str, Any]
) -> str:
    response = await api.post(
        "/v1/connections",
        json={"connector": connector, "credentials": credentials},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def act(
    api: httpx.AsyncClient, tenant: TenantKey, connection_id: str, action: str, params: dict
) -> str:
    response = await api.post(
        "/v1/actions",
        json={"connection_id": connection_id, "action": action, "params": params},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def vendor_calls(
    integrations: Integrations, vendor: str, needle: str, timeout_s: float = 60
) -> list[VendorCall]:
    async def probe() -> list[VendorCall]:
        return integrations.vendors.matching(vendor, needle)

    return await eventually(probe, timeout_s, f"a {vendor} call mentioning {needle}")


async def redeliver_and_wait(settings: Settings, topic: str, group: str, event_id: str) -> None:
    """Publish an event's record again, byte for byte, and wait until `group` has handled it.

    "Handled" is read from the group's committed offset: the runner commits a
    partition only past events whose handling finished.
    """
    records = await read_topic(settings, topic)
    record = next(r for r in records if str(decode_raw(r.value).id) == event_id)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.send(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
    finally:
        await publisher.stop()
    again = [
        r for r in await read_topic(settings, topic) if str(decode_raw(r.value).id) == event_id
    ]
    copy = max(again, key=lambda r: r.offset)
    bootstrap, _, _ = settings.require_services()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=settings.group(group), enable_auto_commit=False
    )
    await consumer.start()
    try:
        partition = TopicPartition(copy.topic, copy.partition)

        async def handled() -> bool:
            committed = await consumer.committed(partition)
            return committed is not None and committed > copy.offset

        await eventually(handled, 30, f"{group} to handle the redelivered {event_id}")
    finally:
        await consumer.stop()
