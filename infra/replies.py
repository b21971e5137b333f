"""Answers for callers that wait: one reply channel per process (Replies), and the
response cache of earlier identical requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import orjson

from infra.errors import TransientError
from infra.live_streams import JobStreams, StreamEvent, entry_order
from infra.redis import REDIS_ERRORS
from infra.settings import Settings
from infra.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class ReplyWaiter:
    """One job's entries for a caller that waits on them, in order, each once."""

    def __init__(self, streams: JobStreams, job_id: uuid.UUID, poll_s: float) -> None:
        self._streams = streams
        self.job_id = job_id
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self._last = (0, 0)
        self._last_id = "0-0"
        self._poll_s = poll_s

    def offer(self, event: StreamEvent) -> None:
        self._queue.put_nowait(event)

    async def next(self) -> StreamEvent:
        """The next entry; reads the stream itself when the channel was quiet for a while."""
        while True:
            try:
                # asyncio.timeout, not wait_for: no task created per entry.
                async with asyncio.timeout(self._poll_s):
                    event = await self._queue.get()
            except TimeoutError:
                # Pub/sub drops messages while a connection is down: the stream
                # is the record, so catch up from it.
                try:
                    missed = await self._streams.read(self.job_id, self._last_id, block_ms=None)
                except TransientError:
                    continue  # Redis is away: wait on, the deadline is the caller's
                for event in missed:
                    self._queue.put_nowait(event)
                continue
            order = entry_order(event.id)
            if order <= self._last:
                continue
            self._last, self._last_id = order, event.id
            return event


class Replies:
    """One Redis subscription per process, shared by every caller waiting on a job.

    A request that waits for its job's answer registers here before the job
    is published and names this process's channel in the event; the worker
    publishes each stream entry there too. No request holds a blocking read.
    """

    def __init__(self, settings: Settings, streams: JobStreams, poll_s: float = 1.0) -> None:
        self.channel = f"{settings.topic_prefix}ayush:replies:{uuid.uuid4().hex}"
        self._streams = streams
        self._poll_s = poll_s
        self._waiting: dict[str, ReplyWaiter] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def waiter(self, job_id: uuid.UUID) -> ReplyWaiter:
        waiter = ReplyWaiter(self._streams, job_id, self._poll_s)
        self._waiting[str(job_id)] = waiter
        return waiter

    def forget(self, job_id: uuid.UUID) -> None:
        self._waiting.pop(str(job_id), None)

    async def _listen(self) -> None:
        while True:
            pubsub = self._streams._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                while True:
                    # A bounded wait: the client's socket timeout would end an endless one.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message["data"])
            except REDIS_ERRORS as exc:
                log.warning("reply channel lost, resubscribing: %s", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()

    def _dispatch(self, data: bytes) -> None:
        job, entry_id, type_, body = data.split(b"\n", 3)
        waiter = self._waiting.get(job.decode())
        if waiter is not None:
            waiter.offer(StreamEvent(entry_id.decode(), type_.decode(), orjson.loads(body)))


class ResponseCache:
    """Answers of earlier identical requests, by a hash the caller computes."""

    def __init__(
        self, streams: JobStreams, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self._redis = streams._redis
        self._prefix = f"{settings.topic_prefix}ayush:cache:"
        self._metrics = metrics

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except REDIS_ERRORS as exc:
            log.warning("response cache unavailable: %s", exc)
            return None
        if self._metrics is not None:
            result = "hit" if raw else "miss"
            self._metrics.cache_lookups.labels("response", result).inc()
        return orjson.loads(raw) if raw else None

    async def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        try:
            await self._redis.set(self._prefix + key, orjson.dumps(value), ex=ttl_s)
        except REDIS_ERRORS as exc:
            log.warning("response cache unavailable: %s", exc)
