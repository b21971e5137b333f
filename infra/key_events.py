"""Telling every ingress process that an API key changed (revoked, rotated), within a second.

Each ingress caches keys for a few seconds so a busy client costs no query per request.
A change is published on one Redis channel with the key's id; every ingress subscribes when
it starts and forgets what it cached of that key. While the subscription is down a process
could miss a change, so its listener is told (`suspend`): it drops its cache and stops
caching until it is subscribed again (`resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Protocol

from infra.redis import REDIS_ERRORS, connect, redis_errors
from infra.settings import Settings

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 10.0
RESUBSCRIBE_DELAY_S = 0.5


class KeyListener(Protocol):
    def forget_key(self, key_id: uuid.UUID) -> None: ...

    def suspend(self) -> None: ...

    def resume(self) -> None: ...


class KeyChanges:
    """The channel of key changes: publish one, or listen to all of them."""

    def __init__(self, settings: Settings) -> None:
        # A ping now and then finds a connection that died without a word.
        self._redis = connect(
            settings, 4, socket_timeout=5, socket_connect_timeout=5, health_check_interval=5
        )
        self.channel = f"{settings.topic_prefix}ayush:keys:changed"
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, key_id: uuid.UUID) -> None:
        """Raises TransientError when Redis cannot take it."""
        with redis_errors("key change publish"):
            await self._redis.publish(self.channel, str(key_id))

    async def listen(self, listener: KeyListener) -> None:
        """Subscribe (waiting until it is done) and pass every change to `listener`."""
        self._task = asyncio.create_task(self._listen(listener))
        await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_TIMEOUT_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def _listen(self, listener: KeyListener) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                listener.resume()
                self._subscribed.set()
                while True:
                    # A bounded wait: the client's socket timeout would end an endless one.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        _dispatch(listener, message["data"])
            except REDIS_ERRORS as exc:
                listener.suspend()
                log.warning("key change channel lost, resubscribing: %s", exc)
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()


def _dispatch(listener: KeyListener, data: bytes) -> None:
    try:
        key_id = uuid.UUID(data.decode())
    except (ValueError, UnicodeDecodeError):
        log.warning("ignored a malformed key change: %r", data[:100])
        return
    listener.forget_key(key_id)
