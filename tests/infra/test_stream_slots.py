"""Open-stream slots in Redis: shared by every ingress process, lapsing with a dead one;
stream readers wait on a Redis pool of their own."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from infra.errors import TransientError
from infra.live_streams import JobStreams, StreamEvent
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from infra.stream_slots import StreamLimit, StreamSlot, StreamSlots
from tests.harness import eventually, unique


def slot_settings(services: ServiceAddresses, **limits: float) -> Settings:
    return services.apply(Settings(topic_prefix=unique("slots") + ".", **limits))


async def refused_by(slots: StreamSlots, tenant: uuid.UUID, key: uuid.UUID) -> str:
    with pytest.raises(StreamLimit) as refused:
        await slots.take(tenant, key)
    return refused.value.scope


async def test_slots_are_shared_by_processes_and_lapse_when_one_dies(
    services: ServiceAddresses,
) -> None:
    settings = slot_settings(
        services, max_streams_per_key=2, max_streams_per_tenant=3, stream_slot_lease_s=3.0
    )
    tenant, key_a, key_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    dying, living = StreamSlots(settings), StreamSlots(settings)  # two ingress processes
    await dying.start()
    await living.start()
    try:
        await dying.take(tenant, key_a)
        await living.take(tenant, key_a)
        assert await refused_by(living, tenant, key_a) == "key"
        await living.take(tenant, key_b)
        assert await refused_by(living, tenant, key_b) == "tenant"
        assert await refused_by(dying, tenant, uuid.uuid4()) == "tenant"
        assert living.held == 2  # refusals hold nothing

        # The process dies: it renews nothing and releases nothing.
        assert dying._renewing is not None
        dying._renewing.cancel()

        async def admitted() -> StreamSlot | None:
            try:
                return await living.take(tenant, key_a)
            except StreamLimit:
                return None

        again = await eventually(admitted, 30, "the dead process's slot to lapse")
        # The living process renewed its own slots past their lease: still counted.
        assert await refused_by(living, tenant, key_a) == "key"
        await living.release(again)
        assert await living.take(tenant, key_a)
    finally:
        await living.close()
        dying._held.clear()
        await dying.close()


async def test_a_process_caps_its_own_streams(services: ServiceAddresses) -> None:
    slots = StreamSlots(slot_settings(services, max_streams_per_process=2))
    try:
        first = await slots.take(uuid.uuid4(), uuid.uuid4())
        await slots.take(uuid.uuid4(), uuid.uuid4())
        assert await refused_by(slots, uuid.uuid4(), uuid.uuid4()) == "process"
        await slots.release(first)
        await slots.take(uuid.uuid4(), uuid.uuid4())
    finally:
        await slots.close()


async def test_a_burst_of_streams_larger_than_the_pool_waits_for_connections(
    services: ServiceAddresses,
) -> None:
    """32 streams opened at once on a pool of 2 connections all get their slot (a burst of
    streaming requests answered 503 while the pool refused the connections it lacked)."""
    slots = StreamSlots(slot_settings(services), max_connections=2)
    try:
        taken = await asyncio.gather(*(slots.take(uuid.uuid4(), uuid.uuid4()) for _ in range(32)))
        assert len(taken) == 32 and slots.held == 32
    finally:
        await slots.close()


async def test_waiting_readers_never_take_the_connections_of_other_calls(
    services: ServiceAddresses,
) -> None:
    streams = JobStreams(slot_settings(services), max_connections=4, read_connections=2)
    job_a, job_b = uuid.uuid4(), uuid.uuid4()

    async def wait_on(job: uuid.UUID) -> list[StreamEvent]:
        while True:  # until this reader has a connection of the two (the probe takes one too)
            try:
                return await streams.read(job, block_ms=15_000)
            except TransientError:
                await asyncio.sleep(0)

    waiting = [asyncio.create_task(wait_on(job)) for job in (job_a, job_b)]
    try:

        async def readers_exhausted() -> bool:
            try:
                await streams.read(uuid.uuid4(), block_ms=1)
            except TransientError:
                return True
            return False

        await eventually(readers_exhausted, 10, "both reader connections to be waiting")
        # Every other call still has its pool: more calls than its size, at once.
        await asyncio.gather(
            *(streams.append(job_a, "status", {"n": n}) for n in range(6)),
            streams.append(job_b, "status", {"n": 0}),
        )
        assert await streams.exists(job_a)
        assert len(await streams.read(job_a, block_ms=None)) == 6
        done = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        assert [e.type for events in done for e in events][:1] == ["status"]
    finally:
        for task in waiting:
            task.cancel()
        await streams.close()
