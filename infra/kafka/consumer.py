"""A consumer group member that keeps many events in flight.

Model calls take seconds to minutes. Handling one event at a time per
partition would make a worker as slow as its slowest call, and blocking the
poll loop would trip `max_poll_interval_ms` and cause a rebalance. So the
loop keeps polling, runs each event as its own task (bounded), pauses
fetching while the bound is reached, and commits each partition only up to
its lowest unfinished offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from infra.errors import TransientError
from infra.kafka.codec import decode_raw
from infra.kafka.dead_letter import dead_letter, gave_up_reason
from infra.kafka.offsets import PartitionOffsets
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from infra.telemetry.kafka import ConsumeObserver
from schemas.envelope import RawEnvelope

log = logging.getLogger(__name__)

Handler = Callable[[RawEnvelope], Awaitable[None]]
GiveUp = Callable[[RawEnvelope, str], Awaitable[None]]


@dataclass(frozen=True)
class Settling:
    """A handler whose event starts something a client waits on (a job, a memory).

    When the runner gives up on the event (any exception, or a TransientError past the last
    attempt) it parks the event as a dead letter and then calls `give_up` with a short
    reason, which settles that something as failed: a job never stays `running` for good.
    """

    handle: Handler
    give_up: GiveUp

    async def __call__(self, raw: RawEnvelope) -> None:
        await self.handle(raw)


COMMIT_INTERVAL_S = 0.2


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConcurrentConsumer) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._runner.commit(only=set(revoked))
        for tp in revoked:
            # Events still running on a revoked partition will be redone by its
            # new owner; handlers are idempotent, so that is safe.
            self._runner.offsets.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._runner.offsets.setdefault(tp, PartitionOffsets())


class ConcurrentConsumer:
    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        topics: list[str],
        handlers: Mapping[str, Handler],
        publisher: Publisher,
        concurrency: int,
        max_attempts: int | None = None,
    ) -> None:
        self.settings = settings
        self.name = group
        self.group = settings.group(group)
        self.topics = [settings.topic(t) for t in topics]
        self.handlers = handlers
        self.publisher = publisher
        self.concurrency = concurrency
        self.max_attempts = max_attempts or settings.handler_max_attempts
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self.handled = 0
        self.dead_lettered = 0
        self._observer = ConsumeObserver(publisher.metrics, self.group, settings.log_events)

    def stop(self) -> None:
        """Stop taking new events; `run` returns once in-flight ones finish."""
        self._stopping.set()

    async def run(
        self, ready: asyncio.Event | None = None, drain_timeout_s: float | None = None
    ) -> None:
        """Consume until `stop`; then wait up to the shutdown deadline for in-flight
        events, commit what finished and cancel the rest, which stay uncommitted
        and so are handed to the group's next owner of their partition."""
        if drain_timeout_s is None:
            drain_timeout_s = self.settings.shutdown_deadline_s
        bootstrap, _, _ = self.settings.require_services()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self._consumer = consumer
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        await consumer.start()
        try:
            await self._poll_loop(consumer, ready)
            await self._drain(drain_timeout_s)
            await self.commit()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5)
            await consumer.stop()
            self._consumer = None

    async def _poll_loop(self, consumer: AIOKafkaConsumer, ready: asyncio.Event | None) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            free = self.concurrency - len(self._tasks)
            assigned = consumer.assignment()
            if free <= 0:
                consumer.pause(*assigned)
            else:
                consumer.resume(*assigned)
            batch = await consumer.getmany(timeout_ms=100, max_records=max(free, 1))
            if ready is not None and not ready.is_set() and assigned:
                ready.set()
            for tp, records in batch.items():
                tracker = self.offsets.setdefault(tp, PartitionOffsets())
                for record in records:
                    tracker.started(record.offset)
                    task = asyncio.create_task(self._process(tp, tracker, record))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await self.commit()
                last_commit = time.monotonic()
                self._observer.lag(
                    {tp: consumer.highwater(tp) for tp in consumer.assignment()},
                    {tp: t.committed for tp, t in self.offsets.items() if t.committed is not None},
                )

    async def _drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        positions: dict[TopicPartition, int] = {}
        for tp, tracker in self.offsets.items():
            if only is not None and tp not in only:
                continue
            position = tracker.committable()
            if position is not None:
                positions[tp] = position
        if not positions:
            return
        try:
            await consumer.commit(positions)
        except Exception as exc:  # a rebalance in progress: the next commit catches up
            log.warning("offset commit failed, will retry: %s", exc)
            return
        for tp, position in positions.items():
            if tp in self.offsets:
                self.offsets[tp].committed = position

    async def _process(
        self, tp: TopicPartition, tracker: PartitionOffsets, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        try:
            await self._handle_or_dead_letter(record)
        finally:
            tracker.finished(record.offset)

    async def _handle_or_dead_letter(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            raw = decode_raw(record.value)
        except Exception as exc:
            await self._dead_letter(record, f"unparseable event: {exc}", attempts=0)
            return
        handler = self.handlers.get(raw.type)
        if handler is None:
            return  # another group's event type on a shared topic
        attempts = 0
        with self._observer.handling(record, raw) as observed:
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type(TransientError),
                    stop=stop_after_attempt(self.max_attempts),
                    wait=wait_exponential_jitter(multiplier=0.2, max=10.0),
                    reraise=True,
                ):
                    with attempt:
                        attempts = attempt.retry_state.attempt_number
                        observed.retries = attempts - 1
                        await handler(raw)
                self.handled += 1
                observed.outcome = "ok"
            except asyncio.CancelledError:
                observed.outcome = "cancelled"
                raise
            except Exception as exc:
                observed.outcome = "dead_letter"
                observed.span.record_exception(exc)
                log.exception("event %s (%s) failed after %d attempts", raw.id, raw.type, attempts)
                await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempts=attempts)
                if isinstance(handler, Settling):
                    await self._give_up(handler, raw, gave_up_reason(self.name, exc, attempts))

    async def _give_up(self, handler: Settling, raw: RawEnvelope, reason: str) -> None:
        try:
            await handler.give_up(raw, reason)
        except Exception:  # its dead letter is parked; a re-drive settles it later
            log.exception("event %s (%s): could not settle what it started", raw.id, raw.type)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: str, attempts: int
    ) -> None:
        await dead_letter(self.publisher, self.group, record, error, attempts)
        self.dead_lettered += 1
        self._observer.dead_lettered(record.topic)
