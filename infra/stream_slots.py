"""Open event streams, counted per API key and per tenant over every ingress process.

Each open stream holds a slot: a member of one Redis sorted set per scope (its
key, its tenant), scored by when its lease ends. The process that holds a
slot renews the leases of all its slots in one round trip every third of a
lease, and removes a slot when its stream ends. A process that dies renews
nothing: its slots lapse within one lease, and the next admission drops them.

A process also caps its own open streams: its streams read from a Redis pool
of that size, apart from the pool every other request uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from infra.redis import REDIS_ERRORS, connect, redis_errors
from infra.settings import Settings

log = logging.getLogger(__name__)

Scope = Literal["key", "tenant", "process"]

# KEYS: one sorted set per scope. ARGV: now (ms), lease (ms), the slot, then
# one limit per key. Drops lapsed slots; refuses with the 1-based index of the
# first full scope, else adds the slot to every scope and returns 0.
_TAKE = r"""
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
local ends = tonumber(ARGV[1]) + tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ends, ARGV[3])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 0
"""


class StreamLimit(Exception):
    """A new stream would pass a limit: of its key, its tenant, or this process."""

    def __init__(self, scope: Scope, limit: int) -> None:
        super().__init__(f"{scope} at its limit of {limit} open streams")
        self.scope = scope
        self.limit = limit


@dataclass(frozen=True)
class StreamSlot:
    id: str
    sets: tuple[str, ...]


class StreamSlots:
    def __init__(self, settings: Settings, max_connections: int = 20) -> None:
        # A burst of streams larger than the pool waits its turn for a connection (each call
        # is one short script); the default pool would refuse the surplus with an error.
        self._redis = connect(settings, max_connections, wait_s=5)
        self._prefix = f"{settings.topic_prefix}ayush:streams:"
        self._per_key = settings.max_streams_per_key
        self._per_tenant = settings.max_streams_per_tenant
        self._per_process = settings.max_streams_per_process
        self._lease_ms = int(settings.stream_slot_lease_s * 1000)
        self._take = self._redis.register_script(_TAKE)
        self._held: dict[str, StreamSlot] = {}
        self._renewing: asyncio.Task[None] | None = None

    def _sets(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> tuple[str, str]:
        # One hash tag per tenant: on Redis Cluster both sets live in one slot.
        base = f"{self._prefix}{{{tenant_id}}}"
        return f"{base}:key:{key_id}", f"{base}:all"

    @property
    def held(self) -> int:
        """The streams this process holds open now."""
        return len(self._held)

    async def take(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> StreamSlot:
        """A slot for one more stream; raises StreamLimit, or TransientError without Redis."""
        if len(self._held) >= self._per_process:
            raise StreamLimit("process", self._per_process)
        slot = StreamSlot(uuid.uuid4().hex, self._sets(tenant_id, key_id))
        # Held before Redis answers: concurrent takes of this process count it.
        self._held[slot.id] = slot
        try:
            with redis_errors("stream slots"):
                full = int(
                    await self._take(
                        keys=list(slot.sets),
                        args=[_now_ms(), self._lease_ms, slot.id, self._per_key, self._per_tenant],
                    )
                )
        except BaseException:
            del self._held[slot.id]
            raise
        if full:
            del self._held[slot.id]
            raise (
                StreamLimit("key", self._per_key)
                if full == 1
                else StreamLimit("tenant", self._per_tenant)
            )
        return slot

    async def release(self, slot: StreamSlot) -> None:
        """Give the slot back; never raises (a slot left in Redis lapses with its lease)."""
        if self._held.pop(slot.id, None) is None:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in slot.sets:
                    pipe.zrem(name, slot.id)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("stream slot %s not released, it lapses: %s", slot.id, exc)

    async def renew(self) -> None:
        """Extend the lease of every slot this process holds, in one round trip."""
        held = list(self._held.values())
        if not held:
            return
        ends = _now_ms() + self._lease_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for slot in held:
                for name in slot.sets:
                    # Also re-adds a slot that lapsed while Redis was away.
                    pipe.zadd(name, {slot.id: ends})
                    pipe.pexpire(name, self._lease_ms)
            await pipe.execute()

    async def start(self) -> None:
        self._renewing = asyncio.create_task(self._renew_forever())

    async def close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        for slot in list(self._held.values()):
            await self.release(slot)
        await self._redis.aclose()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self.renew()
            except REDIS_ERRORS as exc:
                log.warning("stream slots not renewed: %s", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)
