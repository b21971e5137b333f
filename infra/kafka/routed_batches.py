"""A consumer group member that hands whole batches to its handlers.

For projections that add numbers up (usage), per-event work is the cost:
one transaction and one offset commit per event caps a worker at a few
thousand events a second. Here each poll's records are decoded, grouped by
event type, handed to the type's handler as one list, and the offsets are
committed once after the handlers return. Handlers must be idempotent per
event id: a crash between their commit and the offset commit redelivers the
batch.

A group may also ask for `periodic` work (every `every_s` seconds, between
batches), for what no event announces, such as a deadline passing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from infra.errors import TransientError
from infra.kafka.codec import decode_raw
from infra.kafka.dead_letter import dead_letter, gave_up_reason
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from schemas.envelope import Envelope

log = logging.getLogger(__name__)


Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True)
class BatchRoute:
    """How one event type is handled: a decoder of one record, a handler of a list.

    A record its decoder refuses goes to the dead-letter topic before any
    handler runs. `typed(Payload)` decodes into `Envelope[Payload]` in one pass.
    """

    decode: Callable[[bytes], Any]
    handle: Callable[[list[Any]], Awaitable[None]]
    # Called with one event and a short reason when the runner gives up on it (after its
    # dead letter), to settle what it started as failed; see consumer.Settling.
    give_up: Callable[[Any, str], Awaitable[None]] | None = None


def typed(payload: type[BaseModel]) -> Callable[[bytes], Envelope[Any]]:
    return _envelope_of(payload).model_validate_json


@cache
def _envelope_of(payload: type[BaseModel]) -> type[Envelope[Any]]:
    return Envelope[payload]  # type: ignore[valid-type]


def _header_type(record: Record) -> str | None:
    """The event type from the record's header, or None when the header is absent."""
    for key, value in record.headers or ():
        if key == "ayush-type":
            return value.decode(errors="replace")
    return None


class RoutedBatchConsumer:
    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        topics: list[str],
        handlers: Mapping[str, BatchRoute],
        publisher: Publisher,
        max_batch: int,
        max_attempts: int | None = None,
        periodic: Callable[[], Awaitable[None]] | None = None,
        every_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.name = group
        self.group = settings.group(group)
        self.topics = [settings.topic(t) for t in topics]
        self.handlers = handlers
        self.publisher = publisher
        self.max_batch = max_batch
        self.max_attempts = max_attempts or settings.handler_max_attempts
        self._periodic = periodic
        self._every_s = every_s
        self._stopping = asyncio.Event()
        self.handled = 0
        self.dead_lettered = 0

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from `run`."""
        self._stopping.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        bootstrap, _, _ = self.settings.require_services()
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        await consumer.start()
        pending: asyncio.Task[None] | None = None
        last_periodic = time.monotonic()
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=self.max_batch)
                if ready is not None and not ready.is_set() and consumer.assignment():
                    ready.set()
                if self._periodic is not None and time.monotonic() - last_periodic >= self._every_s:
                    if pending is not None:
                        await pending
                        pending = None
                    await self._run_periodic(self._periodic)
                    last_periodic = time.monotonic()
                if not batch:
                    continue
                # Decode this batch while the previous one waits on its
                # transaction; handle and commit batches strictly in order.
                by_type = await self._decode(batch)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._handle_and_commit(consumer, batch, by_type))
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
            await consumer.stop()

    async def _run_periodic(self, periodic: Callable[[], Awaitable[None]]) -> None:
        try:
            await periodic()
        except asyncio.CancelledError:
            raise
        except Exception:  # the next round tries again
            log.exception("periodic work of %s failed", self.group)

    async def _decode(
        self, batch: dict[TopicPartition, list[Record]]
    ) -> dict[str, list[tuple[Record, Any]]]:
        by_type: dict[str, list[tuple[Record, Any]]] = {}
        for records in batch.values():
            for record in records:
                try:
                    type_ = _header_type(record) or decode_raw(record.value).type
                except Exception as exc:
                    await self._dead_letter(record, f"unparseable event: {exc}", 0)
                    continue
                route = self.handlers.get(type_)
                if route is None:
                    continue  # another group's event type on a shared topic
                try:
                    event = route.decode(record.value or b"")
                except Exception as exc:
                    await self._dead_letter(record, f"unparseable event: {exc}", 0)
                    continue
                by_type.setdefault(type_, []).append((record, event))
        return by_type

    async def _handle_and_commit(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[Record]],
        by_type: dict[str, list[tuple[Record, Any]]],
    ) -> None:
        for type_, items in by_type.items():
            await self._handle_type(self.handlers[type_], items)
        await self._commit(consumer, batch)

    async def _handle_type(self, route: BatchRoute, items: list[tuple[Record, Any]]) -> None:
        try:
            await self._with_retries(route, [event for _, event in items])
            self.handled += len(items)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(items) == 1:
                await self._dead_letter(items[0][0], f"{type(exc).__name__}: {exc}", 1)
                await self._give_up(route, items[0][1], exc, self.max_attempts)
                return
            log.warning("batch of %d failed (%s); retrying one event at a time", len(items), exc)
        # One bad event must not hold back the rest: find it by going one by one.
        for record, event in items:
            try:
                await self._with_retries(route, [event])
                self.handled += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "event at %s:%d:%d failed", record.topic, record.partition, record.offset
                )
                await self._dead_letter(record, f"{type(exc).__name__}: {exc}", self.max_attempts)
                await self._give_up(route, event, exc, self.max_attempts)

    async def _give_up(self, route: BatchRoute, event: Any, exc: Exception, attempts: int) -> None:
        if route.give_up is None:
            return
        try:
            await route.give_up(event, gave_up_reason(self.name, exc, attempts))
        except Exception:  # its dead letter is parked; a re-drive settles it later
            log.exception("%s: could not settle what a given-up event started", self.group)

    async def _with_retries(self, route: BatchRoute, events: list[Any]) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(initial=0.2, max=10.0),
            reraise=True,
        ):
            with attempt:
                await route.handle(events)

    async def _commit(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Record]]
    ) -> None:
        positions = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await consumer.commit(positions)
        except Exception as exc:  # a rebalance took the partitions: their new owner redoes them
            log.warning("offset commit failed; the batch will be redelivered: %s", exc)

    async def _dead_letter(self, record: Record, error: str, attempts: int) -> None:
        await dead_letter(self.publisher, self.group, record, error, attempts)
        self.dead_lettered += 1
