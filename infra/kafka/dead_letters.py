"""Dead-letter topics: list the parked events, re-drive them, or discard them.

A dead-letter topic `<topic>.dlq` holds copies of the events its consumers
gave up on, with the headers ayush-dlq-error, -source, -group and -attempts.
What has been dealt with is remembered as the committed position of the
group `dlq-retry` on that topic: retry and purge move it forward, so a
retried event is never re-driven a second time by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from infra.archive.format import StoredRecord
from infra.kafka.history import History
from infra.kafka.publisher import Publisher
from infra.settings import Settings

RETRY_GROUP = "dlq-retry"


@dataclass(frozen=True)
class DeadLetter:
    record: StoredRecord
    pending: bool

    @property
    def offset(self) -> int:
        return self.record.offset

    @property
    def error(self) -> str:
        return self.record.header("ayush-dlq-error") or ""

    @property
    def source(self) -> str:
        return self.record.header("ayush-dlq-source") or ""

    @property
    def group(self) -> str:
        return self.record.header("ayush-dlq-group") or ""

    @property
    def attempts(self) -> int:
        return int(self.record.header("ayush-dlq-attempts") or 0)


class DeadLetters:
    """The dead letters of one topic (name without prefix, without `.dlq`)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(topic.removesuffix(".dlq"))
        self.dlq = f"{self.topic}.dlq"

    def _positions_consumer(self) -> AIOKafkaConsumer:
        bootstrap, _, _ = self.settings.require_services()
        return AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.settings.group(RETRY_GROUP),
            enable_auto_commit=False,
        )

    async def _done_until(self) -> dict[TopicPartition, int]:
        consumer = self._positions_consumer()
        await consumer.start()
        try:
            positions: dict[TopicPartition, int] = {}
            async with History(self.settings) as history:
                parts = await history.partitions(self.dlq)
            for tp in parts:
                committed = await consumer.committed(tp)
                positions[tp] = committed or 0
            return positions
        finally:
            await consumer.stop()

    async def _mark_done(self, positions: dict[TopicPartition, int]) -> None:
        if not positions:
            return
        consumer = self._positions_consumer()
        await consumer.start()
        try:
            consumer.assign(list(positions))
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in positions.items()})
        finally:
            await consumer.stop()

    async def letters(self, include_done: bool = False) -> list[DeadLetter]:
        done = await self._done_until()
        async with History(self.settings) as history:
            where = await history.locate(self.dlq)
            letters = [
                DeadLetter(r, r.offset >= done.get(TopicPartition(r.topic, r.partition), 0))
                async for r in history.read(where)
            ]
        return [d for d in letters if include_done or d.pending]

    async def retry(self, publisher: Publisher, offset: int | None = None) -> list[DeadLetter]:
        """Publish pending dead letters (or the one at `offset`) to their topic again.

        The event keeps its id, so a consumer that did handle it meanwhile
        drops it as a duplicate.
        """
        pending = await self.letters()
        chosen = [d for d in pending if offset is None or d.offset == offset]
        for letter in chosen:
            record = letter.record
            headers = [(k, v) for k, v in record.headers if not k.startswith("ayush-dlq-")]
            headers.append(("ayush-redriven-from", f"{self.dlq}:{record.offset}".encode()))
            await publisher.send(self.topic, record.value, key=record.key, headers=headers)
        await self._mark_done(self._contiguous(pending, {d.offset for d in chosen}))
        return chosen

    async def purge(self) -> int:
        """Discard every pending dead letter; the records expire with the topic's retention."""
        pending = await self.letters()
        await self._mark_done(self._contiguous(pending, {d.offset for d in pending}))
        return len(pending)

    @staticmethod
    def _contiguous(pending: list[DeadLetter], handled: set[int]) -> dict[TopicPartition, int]:
        """The new position: past every handled letter up to the first one still pending."""
        positions: dict[TopicPartition, int] = {}
        blocked: set[TopicPartition] = set()
        for letter in sorted(pending, key=lambda d: d.offset):
            tp = TopicPartition(letter.record.topic, letter.record.partition)
            if tp in blocked:
                continue
            if letter.offset not in handled:
                blocked.add(tp)
                continue
            positions[tp] = letter.offset + 1
        return positions
