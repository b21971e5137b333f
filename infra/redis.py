"""Redis: each job's live event stream. `redis.asyncio` is used only here.

A job's stream is a Redis Stream, not plain pub/sub: a client that connects
late reads it from the start, and one that reconnects with `Last-Event-ID`
reads only what came after that id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.errors import TransientError
from infra.settings import Settings

TERMINAL = "done"
MAX_BLOCK_MS = 20_000


@dataclass(frozen=True)
class StreamEvent:
    id: str
    type: str
    data: dict[str, Any]


class JobStreams:
    def __init__(self, settings: Settings, max_connections: int = 2000) -> None:
        _, _, url = settings.require_services()
        # Stream readers block for up to MAX_BLOCK_MS; the socket must wait longer than
        # that (redis-py's default read timeout is 5 s).
        self._redis: Redis = Redis.from_url(
            url, max_connections=max_connections, socket_timeout=MAX_BLOCK_MS / 1000 + 10
        )
        self._prefix = f"{settings.topic_prefix}ayush:job:"
        self._ttl = settings.stream_ttl_s
        self._maxlen = settings.stream_maxlen

    def _key(self, job_id: uuid.UUID) -> str:
        return f"{self._prefix}{job_id}"

    async def append(self, job_id: uuid.UUID, type_: str, data: dict[str, Any]) -> str:
        key = self._key(job_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    key,
                    {"t": type_, "d": orjson.dumps(data)},
                    maxlen=self._maxlen,
                    approximate=True,
                )
                pipe.expire(key, self._ttl)
                entry_id, _ = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis append failed: {exc}") from exc
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(
        self, job_id: uuid.UUID, after: str = "0-0", block_ms: int = 15_000, count: int = 500
    ) -> list[StreamEvent]:
        """Events after `after`, waiting up to `block_ms` for the first one."""
        block_ms = min(block_ms, MAX_BLOCK_MS)
        try:
            reply: Any = await self._redis.xread(
                {self._key(job_id): after}, count=count, block=block_ms
            )
        except RedisError as exc:
            raise TransientError(f"redis read failed: {exc}") from exc
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

    async def exists(self, job_id: uuid.UUID) -> bool:
        return bool(await self._redis.exists(self._key(job_id)))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
