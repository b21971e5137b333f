"""Reading a time range of one topic back from the archive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime

from infra.archive.format import StoredRecord, decode, hour_prefix, hours_between
from infra.s3 import ObjectStore

# Objects fetched ahead of the one being decoded: S3 round trips overlap the parsing.
READ_AHEAD = 4


async def count_objects(
    store: ObjectStore, prefix: str, topic: str, start: datetime, end: datetime
) -> int:
    """How many events the manifests of the range's hours announce (for progress bars)."""
    total = 0
    for hour in hours_between(start, end):
        keys = [k async for k in store.list(hour_prefix(prefix, topic, hour))]
        bodies = await asyncio.gather(*(store.get(k) for k in keys if k.endswith(".manifest.json")))
        total += sum(int(json.loads(body)["count"]) for body in bodies if body is not None)
    return total


async def read_range(
    store: ObjectStore, prefix: str, topic: str, start: datetime, end: datetime
) -> AsyncIterator[StoredRecord]:
    """Records of `topic` with a timestamp in [start, end), hour by hour.

    Only objects with a manifest count: an object without one is a write cut
    short by a crash, which the archive group redoes. Offsets already seen
    are skipped, so overlapping objects from a redo never yield duplicates.
    Objects are fetched a few ahead, in order, while earlier ones are decoded.
    """
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    seen: dict[int, set[int]] = {}
    for hour in hours_between(start, end):
        keys = [k async for k in store.list(hour_prefix(prefix, topic, hour))]
        manifests = [k for k in keys if k.endswith(".manifest.json")]
        bodies = await asyncio.gather(*(store.get(k) for k in manifests))
        wanted = []
        for manifest_key, manifest_body in zip(manifests, bodies, strict=True):
            if manifest_body is None:
                continue
            manifest = json.loads(manifest_body)
            if manifest["max_timestamp"] < start_ms or manifest["min_timestamp"] >= end_ms:
                continue
            wanted.append((manifest_key.removesuffix(".manifest.json") + ".jsonl.gz", manifest))
        fetches: list[asyncio.Task[bytes | None]] = []
        try:
            for n, (_, manifest) in enumerate(wanted):
                while len(fetches) < min(n + 1 + READ_AHEAD, len(wanted)):
                    fetches.append(asyncio.create_task(store.get(wanted[len(fetches)][0])))
                body = await fetches[n]
                if body is None:
                    continue
                for record in decode(topic, body, manifest["sha256"]):
                    offsets = seen.setdefault(record.partition, set())
                    if record.offset in offsets or not start_ms <= record.timestamp_ms < end_ms:
                        continue
                    offsets.add(record.offset)
                    yield record
        finally:
            for task in fetches:
                task.cancel()
