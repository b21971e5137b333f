"""Reading stored history back from Kafka: a time range of a topic, without a group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.archive.format import StoredRecord
from infra.settings import Settings


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class TopicRange:
    """Where [start, end) of one topic begins and the log end when it was asked."""

    topic: str
    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    earliest: dict[TopicPartition, int]

    @property
    def exists(self) -> bool:
        return bool(self.ends)

    @property
    def upper_bound(self) -> int:
        return sum(max(self.ends[tp] - self.starts[tp], 0) for tp in self.ends)

    def complete(self) -> bool:
        """Whether Kafka still holds everything from `start` on.

        A partition whose oldest record is also the first in range, after
        some records were already deleted, may have lost part of the range.
        """
        if not self.exists:
            return False
        for tp, first in self.earliest.items():
            if first > 0 and self.starts[tp] <= first:
                return False
        return True


class History:
    """One consumer without a group, for ranges, dead letters and raw reads."""

    def __init__(self, settings: Settings) -> None:
        bootstrap, _, _ = settings.require_services()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def __aenter__(self) -> History:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def partitions(self, full_topic: str) -> list[TopicPartition]:
        cluster = await self._consumer._client.fetch_all_metadata()
        numbers = cluster.partitions_for_topic(full_topic) or set()
        return [TopicPartition(full_topic, p) for p in sorted(numbers)]

    async def locate(self, full_topic: str, start: datetime | None = None) -> TopicRange:
        parts = await self.partitions(full_topic)
        if not parts:
            return TopicRange(full_topic, {}, {}, {})
        earliest = await self._consumer.beginning_offsets(parts)
        ends = await self._consumer.end_offsets(parts)
        starts = dict(earliest)
        if start is not None:
            found = await self._consumer.offsets_for_times({tp: _ms(start) for tp in parts})
            for tp in parts:
                hit = found.get(tp)
                starts[tp] = hit.offset if hit is not None else ends[tp]
        return TopicRange(full_topic, starts, ends, earliest)

    async def read(
        self, where: TopicRange, end: datetime | None = None
    ) -> AsyncIterator[StoredRecord]:
        """Records from the range's start offsets up to its end offsets (or `end` time)."""
        end_ms = _ms(end) if end is not None else None
        remaining = {tp for tp in where.ends if where.starts[tp] < where.ends[tp]}
        if not remaining:
            return
        self._consumer.assign(list(remaining))
        for tp in remaining:
            self._consumer.seek(tp, where.starts[tp])
        while remaining:
            batch = await self._consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= where.ends[tp] or (
                        end_ms is not None and record.timestamp >= end_ms
                    ):
                        remaining.discard(tp)
                        break
                    yield StoredRecord.of(record)
                if records and records[-1].offset + 1 >= where.ends[tp]:
                    remaining.discard(tp)
            if remaining:
                self._consumer.pause(*(set(self._consumer.assignment()) - remaining))
