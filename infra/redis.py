"""Redis: the client and its errors, and Lua scripts called in batches.

`redis.asyncio` is used only here and in the adapters built on it: every Redis adapter
(live streams, replies, budget holds, rate windows, stream slots, key changes) gets its
client from `connect` and maps Redis's errors with `redis_errors`, into TransientError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from infra.coalesce import Coalescer
from infra.errors import TransientError
from infra.settings import Settings

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
