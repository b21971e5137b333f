"""One consumer group member, whatever its delivery policy.

The loop never blocks on a handler: it keeps polling (so `max_poll_interval` is never
tripped), hands events over as the policy says (`Each`: one task per event, bounded;
`Batches`: one list at a time, decoded while the previous list is handled), pauses
fetching while it has no room, and commits each partition only up to its lowest
unfinished offset. Every group gets the same rest:

- a record that does not decode goes to its topic's dead letters (attempts 0);
- a handler attempt runs under its route's time budget; a `TransientError` or a timeout
  is retried with backoff; past the last attempt, or on any other error, the event goes
  to the dead letters with the attempts it really had, and the route's `give_up` settles
  what it started; the events of a failed list (or one out of time) are retried each
  alone, side by side, while the next lists flow (as under `Each`, a partition's events
  are then not handled in order; commits still never pass an unfinished one);
- on a rebalance the work in hand on the revoked partitions is finished and committed
  before they are handed over, and what was fetched but not started is dropped (the new
  owner fetches it again), so nothing is lost or done twice;
- a user's sealed event is opened before it is decoded (the archive, which keeps records
  verbatim, takes it sealed); one whose data key is destroyed, a forgotten user's, is
  skipped: committed, counted (`forgotten`) and logged, never handled;
- spans, handler latency, retries, dead letters and lag for every group;
- `stop` drains: in-flight work gets the shutdown deadline, then is cancelled uncommitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka.dead_letter import dead_letter, gave_up_reason
from infra.kafka.group import Group
from infra.kafka.offsets import PartitionOffsets, Rebalance, Run, commit, finish_runs
from infra.kafka.policies import Attempts, Batches, Each, Policy, RetryPolicy, Timer
from infra.kafka.publisher import Publisher
from infra.kafka.routes import ANY, Record, Route, envelope, header_type
from infra.settings import Settings
from infra.telemetry.kafka import ConsumeObserver

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.2
_SEALED = b'"sealed"'  # in a record value that may hold a sealed payload
P = TypeVar("P")


class _Item(NamedTuple):  # one per event on the hot path: a tuple is the cheapest
    run: Run
    record: Record
    type: str
    event: Any


class GroupRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        topics: Sequence[str],
        routes: Mapping[str, Route],
        publisher: Publisher,
        policy: Policy,
        retry: RetryPolicy | None = None,
        timer: Timer | None = None,
    ) -> None:
        self.settings = settings
        self.name = group
        self.group = settings.group(group)
        self.topics = [settings.topic(t) for t in topics]
        self.routes = routes
        self._any = ANY in routes
        self.publisher = publisher
        self.policy = policy
        self.retry = retry or RetryPolicy.from_settings(settings)
        self.timer = timer
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self.handled = 0
        self.dead_lettered = 0
        self.forgotten = 0
        # The archive takes records as they are: sealed payloads stay sealed there.
        self._sealer = None if self._any else publisher.sealer
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[_Item] = []  # Batches: decoded, not yet handed over
        self._oldest: float | None = None
        self._stopping = asyncio.Event()
        self._serial = asyncio.Lock()
        self._listing = False  # Batches: a list is in hand
        self._alone = 0  # Batches: events of failed lists, being retried each alone
        self._consumer: AIOKafkaConsumer | None = None
        self._observer = ConsumeObserver(publisher.metrics, self.group, settings.log_events)
        self._observer.declare(routes)

    @classmethod
    def for_group(
        cls,
        settings: Settings,
        group: Group[P],
        ports: P,
        publisher: Publisher,
        *,
        policy: Policy | None = None,
    ) -> GroupRunner:
        """The runner of a declared group, its handlers bound to `ports`."""
        return cls(
            settings,
            group=group.name,
            topics=group.topics,
            routes=group.routes(ports),
            publisher=publisher,
            policy=policy or group.policy(settings),
            timer=group.timer(settings, ports),
        )

    def stop(self) -> None:
        """Stop taking new events; `run` returns once in-flight ones finish."""
        self._stopping.set()

    async def run(
        self, ready: asyncio.Event | None = None, drain_timeout_s: float | None = None
    ) -> None:
        if drain_timeout_s is None:
            drain_timeout_s = self.settings.shutdown_deadline_s
        bootstrap, _, _ = self.settings.require_services()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            max_poll_interval_ms=self.settings.kafka_max_poll_interval_ms,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self._consumer = consumer
        consumer.subscribe(self.topics, listener=Rebalance(self.offsets, self.hand_over))
        await consumer.start()
        timer = asyncio.create_task(self._tick(self.timer)) if self.timer else None
        try:
            await self._poll_loop(consumer, ready)
            self._pending.clear()  # fetched, never started: the next owner takes them
            await self._wait_tasks(drain_timeout_s)
            await self.commit()
        finally:
            self._stopping.set()  # a failed poll loop stops the timer too
            if timer is not None:
                await asyncio.wait([timer], timeout=drain_timeout_s)
                timer.cancel()  # only when a round outlived the drain: the last resort
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5)
            await consumer.stop()
            self._consumer = None

    def _room(self) -> int:
        if isinstance(self.policy, Each):
            return self.policy.concurrency - len(self._tasks)
        return self.policy.max_events - len(self._pending) - self._alone

    async def _poll_loop(self, consumer: AIOKafkaConsumer, ready: asyncio.Event | None) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            room = self._room()
            if room <= 0 and self._tasks:
                # Full: wake as soon as work finishes (polling again within a second).
                await asyncio.wait(set(self._tasks), timeout=1.0, return_when=FIRST_COMPLETED)
                self._dispatch()
                room = self._room()
            assigned = consumer.assignment()
            if room <= 0:
                consumer.pause(*assigned)
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            polled = await consumer.getmany(timeout_ms=100, max_records=max(room, 1))
            if ready is not None and not ready.is_set() and assigned:
                ready.set()
            for tp, records in polled.items():
                tracker = self.offsets.setdefault(tp, PartitionOffsets())
                if isinstance(self.policy, Each):
                    for record in records:
                        tracker.started(record.offset)
                        self._spawn(self._each(tracker, record))
                else:
                    await self._take(tracker, records)
            self._dispatch()
            if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await self.commit()
                last_commit = time.monotonic()
                self._observer.lag(
                    {tp: consumer.highwater(tp) for tp in consumer.assignment()},
                    {tp: t.committed for tp, t in self.offsets.items() if t.committed is not None},
                )

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _take(self, tracker: PartitionOffsets, records: list[Record]) -> None:
        """Decode a poll's records of one partition ahead of their list; they are one run
        of offsets, finished together when their list is."""
        run = Run(tracker, records[0].offset)
        tracker.started(run.first, records[-1].offset)
        if self._oldest is None:
            self._oldest = time.monotonic()
        pending = self._pending
        for record in records:
            try:
                item = await self._route(run, record)
            except Exception as exc:
                await self._dead_letter(record, _unparseable(exc), 0)
                continue
            if item is not None:
                pending.append(item)
        if not pending or pending[-1].run is not run:  # nothing of the run to hand over
            tracker.finished(run.first)

    def _dispatch(self) -> None:
        policy = self.policy
        if not isinstance(policy, Batches) or self._listing or not self._pending:
            return
        full = len(self._pending) >= policy.max_events
        old = self._oldest is not None and time.monotonic() - self._oldest >= policy.max_age_s
        if full or old:
            items, self._pending, self._oldest = self._pending, [], None
            self._listing = True
            self._spawn(self._batch(items))

    async def _route(self, run: Run, record: Record) -> _Item | None:
        """The record's route and event, or None when no route wants it (another group's
        type on a shared topic) or it is a forgotten user's. Raises when the record does
        not decode (or its sealed payload does not open)."""
        type_ = ANY if self._any else header_type(record) or envelope(record).type
        route = self.routes.get(type_)
        if route is None:
            return None
        opened = record
        if self._sealer is not None and record.value and _SEALED in record.value:
            value = await self._sealer.open_value(record.value)
            if value is None:
                self.forgotten += 1
                log.info(
                    "forgotten user's event skipped: %s at %s:%d:%d",
                    type_,
                    record.topic,
                    record.partition,
                    record.offset,
                )
                return None
            # Decoded from the opened copy; the record kept (dead letters) stays sealed.
            opened = dataclasses.replace(record, value=value)
        return _Item(run, record, type_, route.decode(opened))

    async def _each(self, tracker: PartitionOffsets, record: Record) -> None:
        try:
            item = await self._route(Run(tracker, record.offset), record)
        except Exception as exc:
            item = None
            await self._dead_letter(record, _unparseable(exc), 0)
        try:
            if item is not None:
                await self._settle([item])  # a single event: settled whatever happens
        finally:
            tracker.finished(record.offset)

    async def _batch(self, items: list[_Item]) -> None:
        failed: list[_Item] = []
        try:
            by_type: dict[str, list[_Item]] = {}
            for item in items:
                by_type.setdefault(item.type, []).append(item)
            async with self._serial:
                for same in by_type.values():
                    if not await self._settle(same, listed=True):
                        failed += same
        finally:
            self._alone += len(failed)  # before the next list is cut: room is shared
            self._listing = False
            finish_runs([i.run for i in items], [i.run for i in failed])
        if failed:
            self._spawn(self._isolate(failed))
        await self.commit()

    async def _isolate(self, items: list[_Item]) -> None:
        """A failed list's events, each alone and side by side, beside the next lists: one
        bad or hung event holds nothing but its own offset's commit."""
        try:
            await asyncio.gather(*(self._settle([item]) for item in items))
        finally:
            self._alone -= len(items)
            finish_runs([i.run for i in items])
        await self.commit()

    async def _settle(self, items: list[_Item], listed: bool = False) -> bool:
        """Handle events of one type. An event that fails for good is dead-lettered (True:
        settled); a `listed` list that fails, or runs out of time, is for the caller to
        retry event by event (False)."""
        try:
            await self._attempt(items, listed)
        except asyncio.CancelledError:
            raise
        except _Split as split:
            log.warning("%d %s events: %s; each alone", len(items), items[0].type, split)
            return False
        except Exception:
            pass  # dead-lettered and settled by _attempt
        return True

    async def _attempt(self, items: list[_Item], listed: bool = False) -> None:
        """Handle the events with retries; a single event that fails is parked and settled."""
        route = self.routes[items[0].type]
        retry = route.retry(self.settings) if route.retry else self.retry
        events = [item.event for item in items]
        attempts = Attempts()

        async def call() -> None:
            if route.batch:
                await route.handle(events)
            else:
                for event in events:
                    await route.handle(event)

        records = [item.record for item in items]
        with self._observer.handling(records, items[0].type, events[0]) as observed:
            try:
                # A list out of time is split at once: its hung event is retried alone,
                # without holding the group for every attempt.
                await retry.call(call, attempts, retry_timeouts=not listed)
                observed.retries = attempts.made - 1
                observed.outcome = "ok"
                self.handled += len(items)
                return
            except asyncio.CancelledError:
                observed.outcome = "cancelled"
                raise
            except Exception as exc:
                observed.retries = attempts.made - 1
                observed.span.record_exception(exc)
                if listed and (len(items) > 1 or isinstance(exc, TimeoutError)):
                    observed.outcome = "split"
                    raise _Split(f"{type(exc).__name__}: {exc}") from exc
                observed.outcome = "dead_letter"
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.error("%s failed after %d attempts: %s", items[0].type, attempts.made, error)
                await self._dead_letter(items[0].record, error, attempts.made)
                await self._give_up(
                    route, items[0].event, gave_up_reason(self.name, exc, attempts.made)
                )
                raise

    async def _give_up(self, route: Route, event: Any, reason: str) -> None:
        if route.give_up is None:
            return
        try:
            await route.give_up(event, reason)
        except Exception:  # its dead letter is parked; a re-drive settles it later
            log.exception("%s: could not settle what a given-up event started", self.group)

    async def _dead_letter(self, record: Record, error: str, attempts: int) -> None:
        await dead_letter(self.publisher, self.group, record, error, attempts)
        self.dead_lettered += 1
        self._observer.dead_lettered(record.topic)

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go to another member: finish and commit the work in hand,
        drop what was fetched but not started (the new owner fetches it again)."""
        self._pending = [i for i in self._pending if _tp(i.record) not in revoked]
        await self._wait_tasks(self.settings.shutdown_deadline_s)
        await self.commit(only=revoked)
        for tp in revoked:
            self.offsets.pop(tp, None)

    async def _wait_tasks(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        if self._consumer is not None:
            await commit(self._consumer, self.offsets, only)

    async def _tick(self, timer: Timer) -> None:
        # Ends at a stop between rounds: cancelled inside a database call, a task can be
        # left spinning (MagicStack/asyncpg#873).
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timer.every_s)
            if self._stopping.is_set():
                return
            try:
                async with self._serial:  # between lists, never beside one
                    await timer.run()
            except Exception:  # the next round tries again
                log.exception("periodic work of %s failed", self.group)


class _Split(Exception):
    """A list failed: its events are to be retried each alone."""


def _unparseable(exc: Exception) -> str:
    return f"unparseable event: {type(exc).__name__}: {exc}"


def _tp(record: Record) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)
