"""Live streams: each job's event stream and the live channels (infra.channels), as Redis
Streams.

A stream, not plain pub/sub: a client that connects late reads it from the start, and one
that reconnects with `Last-Event-ID` (or a WebSocket `after`) reads only what came after
that id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from infra.redis import Arg, ScriptCalls, connect, redis_errors
from infra.settings import Settings

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
