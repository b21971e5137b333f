"""Redis: the client, its errors, and each job's live event stream.

`redis.asyncio` is used only here: every Redis adapter (budget holds, rate windows,
stream slots, key changes) gets its client from `connect` and maps Redis's errors
with `redis_errors`, into TransientError.

A job's stream is a Redis Stream, not plain pub/sub: a client that connects
late reads it from the start, and one that reconnects with `Last-Event-ID`
reads only what came after that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from infra.coalesce import Coalescer
from infra.errors import TransientError
from infra.settings import Settings
from infra.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

TERMINAL = "done"
MAX_BLOCK_MS = 20_000

# Append entries and, when a caller waits on a reply channel, publish each
# there with its id, in one step: the waiter can then drop anything it has
# already read from the stream itself. KEYS: the job's stream, then one live
# channel per mirrored entry (`also`). ARGV: maxlen, ttl, channel or '', job
# id, the number of the job's entries, a type and a body per entry, then a type
# and a body per mirrored entry. Returns the last job entry's id.
_APPEND = r"""
local id
local last = 5 + 2 * tonumber(ARGV[5])
for i = 6, last, 2 do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[i], 'd', ARGV[i + 1])
  if ARGV[3] ~= '' then
    redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\n' .. id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
for k = 2, #KEYS do
  local i = last + 1 + 2 * (k - 2)
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[i], 'd', ARGV[i + 1])
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return id
"""

# An entry for a live channel: (channel name, event name, data).
Mirror = tuple[str, str, dict[str, Any]]


def channel_key(prefix: str, name: str) -> str:
    """The Redis key of a live channel (infra.channels) under a topic prefix."""
    return f"{prefix}ayush:ch:{name}"


Arg = bytes | str | int | float
# What a Redis call raises when Redis is away or refuses: its own errors, and the
# OSError of a connection that dropped under it.
REDIS_ERRORS = (RedisError, OSError)


def connect(
    settings: Settings, max_connections: int, *, wait_s: float | None = None, **options: Any
) -> Redis:
    """A client with a pool of its own, `max_connections` large. `wait_s`: a call finding
    every connection busy waits up to that long for one (else it fails at once)."""
    _, _, url = settings.require_services()
    if wait_s is None:
        return Redis.from_url(url, max_connections=max_connections, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, **options
    )
    return Redis(connection_pool=pool)


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Redis's errors as TransientError (`redis <what> failed: ...`), as every caller
    expects of an adapter: `with redis_errors("read"): await client.get(key)`."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise TransientError(f"redis {what} failed: {exc}") from exc


class ScriptStore:
    """An adapter made of Lua scripts, on a pool of its own: each script call is atomic,
    and those of concurrent callers share round trips (ScriptCalls)."""

    def __init__(self, settings: Settings, max_connections: int) -> None:
        self._redis = connect(settings, max_connections)
        self._prefix = f"{settings.topic_prefix}ayush:"
        self._scripts = ScriptCalls(self._redis)

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Arg]) -> Any:
        with redis_errors("script"):
            return await self._scripts.call(script, keys, args)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


class ScriptCalls:
    """Lua script calls of many concurrent callers, pipelined: one round trip for
    all that arrived while the last one was in flight, each call still atomic
    and run in the order called."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._calls: Coalescer[tuple[AsyncScript, list[str], list[Arg]], Any] = Coalescer(self._run)

    async def call(self, script: AsyncScript, keys: list[str], args: list[Arg]) -> Any:
        """The script's reply; raises RedisError."""
        return await self._calls.submit((script, keys, args))

    async def _run(self, calls: list[tuple[AsyncScript, list[str], list[Arg]]]) -> list[Any]:
        if len(calls) == 1:
            script, keys, args = calls[0]
            return [await script(keys=keys, args=args)]
        # EVALSHA, not the script objects: redis-py would ask SCRIPT EXISTS on
        # every pipeline. A Redis that lost its scripts (a restart) fails this
        # batch; the coalescer then runs the calls one by one, which loads them.
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return list(await pipe.execute())


@dataclass(frozen=True)
class StreamPosition:
    """An id a client resumes from: whether the stream has it, and whether the stream's
    end (its `done` entry) is at or before it, so nothing more will come."""

    known: bool
    ended: bool


@dataclass(frozen=True)
class StreamEvent:
    id: str
    type: str
    data: dict[str, Any]


class StreamStore:
    """Redis Streams read by live clients (job streams, live channels). A reader that
    waits (`block_ms`) holds a connection of its own pool, `read_connections` large, for
    as long as it waits: open streams never take the connections every other call needs."""

    def __init__(self, settings: Settings, max_connections: int, read_connections: int) -> None:
        # Stream readers block for up to MAX_BLOCK_MS; the socket must wait longer than
        # that (redis-py's default read timeout is 5 s).
        timeout_s = MAX_BLOCK_MS / 1000 + 10
        self._redis = connect(settings, max_connections, socket_timeout=timeout_s)
        self._readers = connect(settings, read_connections, socket_timeout=timeout_s)
        self._topic_prefix = settings.topic_prefix
        self._ttl = settings.stream_ttl_s
        self._maxlen = settings.stream_maxlen
        self._scripts = ScriptCalls(self._redis)

    async def _read(
        self, key: str, after: str, block_ms: int | None, count: int
    ) -> list[StreamEvent]:
        redis = self._redis
        if block_ms is not None:
            block_ms = min(block_ms, MAX_BLOCK_MS)
            redis = self._readers
        with redis_errors("read"):
            reply: Any = await redis.xread({key: after}, count=count, block=block_ms)
        events: list[StreamEvent] = []
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                events.append(
                    StreamEvent(
                        id=entry_id.decode(),
                        type=fields[b"t"].decode(),
                        data=orjson.loads(fields[b"d"]),
                    )
                )
        return events

    async def _exists(self, key: str) -> bool:
        with redis_errors("read"):
            return bool(await self._redis.exists(key))

    async def _position(self, key: str, entry_id: str) -> StreamPosition | None:
        with redis_errors("read"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xrange(key, entry_id, entry_id, count=1)
                pipe.xrange(key, "-", "+", count=1)
                pipe.xrevrange(key, "+", "-", count=1)
                found, first, last = await pipe.execute()
        if not first:
            return None
        order = entry_order(entry_id)
        # An id older than the first entry kept was trimmed away (or is "0-0"): a
        # resume from it replays what is left.
        known = bool(found) or order < entry_order(first[0][0].decode())
        last_id, fields = last[0]
        ended = fields[b"t"].decode() == TERMINAL and order >= entry_order(last_id.decode())
        return StreamPosition(known=known, ended=known and ended)

    def _channel_key(self, name: str) -> str:
        return channel_key(self._topic_prefix, name)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._readers.aclose()
        await self._redis.aclose()


class LiveStream:
    """One stream of a StreamStore, as a follower reads it (producers.ingress.job_stream)."""

    def __init__(self, store: StreamStore, key: str) -> None:
        self._store = store
        self._key = key

    async def read(
        self, after: str = "0-0", block_ms: int | None = 15_000, count: int = 500
    ) -> list[StreamEvent]:
        """Events after `after`, waiting up to `block_ms` for the first one (None: no wait)."""
        return await self._store._read(self._key, after, block_ms, count)

    async def exists(self) -> bool:
        return await self._store._exists(self._key)

    async def position(self, entry_id: str) -> StreamPosition | None:
        """Where `entry_id` (a well-formed id) stands in the stream; None when the stream
        does not exist (expired, or never written). `ended`: its `done` entry is at or
        before the id."""
        return await self._store._position(self._key, entry_id)


class JobStreams(StreamStore):
    """Jobs' (and batches') live streams, keyed by their id."""

    def __init__(
        self, settings: Settings, max_connections: int = 2000, read_connections: int = 8
    ) -> None:
        super().__init__(settings, max_connections, read_connections)
        self._prefix = f"{settings.topic_prefix}ayush:job:"
        self._append = self._redis.register_script(_APPEND)

    def _key(self, job_id: uuid.UUID) -> str:
        return f"{self._prefix}{job_id}"

    async def cancel(self, job_id: uuid.UUID) -> None:
        """Ask the worker running the job to stop it (it looks before and during the call)."""
        with redis_errors("cancel"):
            await self._redis.set(f"{self._prefix}{job_id}:cancel", b"1", ex=self._ttl)

    async def cancelled(self, job_id: uuid.UUID) -> bool:
        with redis_errors("read"):
            return bool(await self._redis.exists(f"{self._prefix}{job_id}:cancel"))

    def stream(self, job_id: uuid.UUID) -> LiveStream:
        return LiveStream(self, self._key(job_id))

    async def append(
        self,
        job_id: uuid.UUID,
        type_: str,
        data: dict[str, Any],
        notify: str | None = None,
        *,
        also: list[Mirror] | None = None,
    ) -> str:
        """Append to the job's stream; also publish to `notify` (a Replies channel) if given."""
        return await self.append_many(job_id, [(type_, data)], notify, also=also)

    async def append_many(
        self,
        job_id: uuid.UUID,
        entries: list[tuple[str, dict[str, Any]]],
        notify: str | None = None,
        *,
        also: list[Mirror] | None = None,
    ) -> str:
        """Several entries in order, in one round trip (e.g. the result and the end).

        `also`: (channel, event, data) entries for live channels (infra.channels, e.g. the
        job's user's feed), appended by the same script call: no round trip of their own."""
        keys = [self._key(job_id)]
        args: list[Arg] = [self._maxlen, self._ttl, notify or "", str(job_id), len(entries)]
        for type_, data in entries:
            args += (type_, orjson.dumps(data))
        for channel, type_, data in also or ():
            keys.append(self._channel_key(channel))
            args += (type_, orjson.dumps(data))
        with redis_errors("append"):
            entry_id = await self._scripts.call(self._append, keys, args)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(
        self,
        job_id: uuid.UUID,
        after: str = "0-0",
        block_ms: int | None = 15_000,
        count: int = 500,
    ) -> list[StreamEvent]:
        """Events after `after`, waiting up to `block_ms` for the first one (None: no wait)."""
        return await self._read(self._key(job_id), after, block_ms, count)

    async def exists(self, job_id: uuid.UUID) -> bool:
        return await self._exists(self._key(job_id))

    async def position(self, job_id: uuid.UUID, entry_id: str) -> StreamPosition | None:
        """Where `entry_id` (a well-formed id) stands in the job's stream; None when the
        stream does not exist (expired, or never written)."""
        return await self._position(self._key(job_id), entry_id)


def entry_order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


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
