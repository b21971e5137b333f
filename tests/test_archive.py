"""The archive's objects: manifests, checksums, and redoing a batch without duplicates."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select

from consumers.groups.archive import group as archive
from infra.archive import reader
from infra.db.engine import Database
from infra.db.event_log import EventLogRow
from infra.kafka.codec import encode
from infra.local_stack import ServiceAddresses
from infra.s3 import ObjectStore
from infra.settings import Settings
from schemas import jobs as job_events
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.harness import unique


@pytest.fixture
async def store(services: ServiceAddresses) -> AsyncIterator[ObjectStore]:
    settings = services.apply(Settings(s3_bucket=unique("test-archive-")))
    object_store = await ObjectStore(settings).start()
    await object_store.ensure_bucket()
    yield object_store
    await object_store.close()


def _record(topic: str, offset: int, at: datetime, tenant: object) -> ConsumerRecord[bytes, bytes]:
    job_id = uuid7()
    envelope = Envelope[job_events.JobFailed](
        type=job_events.JOB_FAILED,
        tenant_id=tenant,  # type: ignore[arg-type]
        actor=Actor(kind="system", id="test"),
        correlation_id=job_id,
        occurred_at=at,
        payload=job_events.JobFailed(job_id=job_id, error=f"error {offset}"),
    )
    key, value, headers = encode(envelope)
    return ConsumerRecord(
        topic, 0, offset, int(at.timestamp() * 1000), 0, key, value, None, len(key), len(value),
        headers,
    )  # fmt: skip


async def test_a_redone_batch_overwrites_its_objects_and_reads_back_once(
    services: ServiceAddresses, store: ObjectStore, db: Database
) -> None:
    settings = services.apply(Settings(archive_prefix=unique("a")))
    ports = archive.Ports(settings, db, store)
    tenant = uuid7()
    topic = unique("topic.")
    hour = datetime.now(UTC).replace(minute=59, second=59, microsecond=0) - timedelta(hours=1)
    # 6 records across an hour boundary: two objects
    records = [_record(topic, i, hour + timedelta(milliseconds=400 * i), tenant) for i in range(6)]

    await archive.archive_batch(records[:4], ports)
    # a crash before the commit: the redo reads the batch again, with more behind it
    await archive.archive_batch(records, ports)

    keys = [k async for k in store.list(f"{settings.archive_prefix}/{topic}/")]
    objects = [k for k in keys if k.endswith(".jsonl.gz")]
    manifests = [k for k in keys if k.endswith(".manifest.json")]
    assert len(objects) == 2 and len(manifests) == 2  # overwritten, not duplicated
    first_manifest = json.loads(await store.get(manifests[0]) or b"")
    assert first_manifest["count"] == 3 and first_manifest["first_offset"] == 0
    body = await store.get(objects[0]) or b""
    assert len(gzip.decompress(body).splitlines()) == 3

    start, end = hour - timedelta(hours=1), hour + timedelta(hours=1)
    back = [r async for r in reader.read_range(store, settings.archive_prefix, topic, start, end)]
    assert sorted(r.offset for r in back) == list(range(6))
    assert [r.value for r in sorted(back, key=lambda r: r.offset)] == [r.value for r in records]
    assert await reader.count_objects(store, settings.archive_prefix, topic, start, end) == 6

    async with db.session() as session:
        logged = await session.execute(
            select(func.count()).select_from(EventLogRow).where(EventLogRow.tenant_id == tenant)
        )
    assert logged.scalar_one() == 6


async def test_a_damaged_object_is_refused(
    services: ServiceAddresses, store: ObjectStore, db: Database
) -> None:
    settings = services.apply(Settings(archive_prefix=unique("a")))
    topic = unique("topic.")
    now = datetime.now(UTC)
    await archive.archive_batch(
        [_record(topic, 0, now, uuid7())], archive.Ports(settings, db, store)
    )
    keys = [k async for k in store.list(f"{settings.archive_prefix}/{topic}/")]
    key = next(k for k in keys if k.endswith(".jsonl.gz"))
    await store.put(key, gzip.compress(b"{}\n"))
    with pytest.raises(ValueError, match="checksum"):
        async for _ in reader.read_range(
            store,
            settings.archive_prefix,
            topic,
            now - timedelta(hours=1),
            now + timedelta(hours=1),
        ):
            pass
