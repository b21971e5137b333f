"""A consumer group member that hands over records in batches and commits after each.

For sinks that write many events at once (the S3 archive): a batch is
flushed when it is big or old enough, and its offsets are committed only
once the flush returned. A crash redoes the uncommitted batch; flushes must
therefore be idempotent (the archive overwrites objects named by offsets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from infra.errors import TransientError
from infra.settings import Settings

log = logging.getLogger(__name__)

Flush = Callable[[Sequence["ConsumerRecord[bytes, bytes]"]], Awaitable[None]]


class _FlushOnRevoke(ConsumerRebalanceListener):
    def __init__(self, runner: BatchConsumer) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Finish the batch while the partitions are still ours, so the new
        # owner starts after it instead of redoing it.
        await self._runner.flush_and_commit()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class BatchConsumer:
    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        topics: Sequence[str],
        flush: Flush,
        max_events: int,
        max_age_s: float,
    ) -> None:
        self.settings = settings
        self.group = settings.group(group)
        self.topics = [settings.topic(t) for t in topics]
        self._flush = flush
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._pending: list[ConsumerRecord[bytes, bytes]] = []
        self._oldest: float | None = None
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self.flushed = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        bootstrap, _, _ = self.settings.require_services()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            max_poll_interval_ms=600_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self._consumer = consumer
        consumer.subscribe(self.topics, listener=_FlushOnRevoke(self))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                room = max(self.max_events - len(self._pending), 1)
                batch = await consumer.getmany(timeout_ms=100, max_records=room)
                if ready is not None and not ready.is_set() and consumer.assignment():
                    ready.set()
                for records in batch.values():
                    if records and self._oldest is None:
                        self._oldest = time.monotonic()
                    self._pending.extend(records)
                if self._due():
                    await self.flush_and_commit()
            await self.flush_and_commit()
        finally:
            await consumer.stop()
            self._consumer = None

    def _due(self) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_events:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.max_age_s

    async def flush_and_commit(self) -> None:
        async with self._lock:
            records, self._pending, self._oldest = self._pending, [], None
            if not records:
                return
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(8),
                wait=wait_exponential(multiplier=0.2, max=10),
                reraise=True,
            ):
                with attempt:
                    await self._flush(records)
            positions: dict[TopicPartition, int] = {}
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                positions[tp] = max(positions.get(tp, 0), record.offset + 1)
            if self._consumer is not None:
                try:
                    await self._consumer.commit(positions)
                except Exception as exc:  # rebalance: the new owner redoes it, overwriting
                    log.warning("commit after flush failed: %s", exc)
            self.flushed += len(records)
