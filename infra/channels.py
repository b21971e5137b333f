"""Live channels: Redis Streams keyed by a channel name, for what is not one job's stream.

A conversation's turns (`conversation_channel`), a user's feed (`user_channel`: the
status of every job and batch of that user) and whatever else clients follow live.
The ids, entries and resume rules are the job streams' (infra.live_streams): entries `t`
(the event name) and `d` (its JSON data), trimmed to about `stream_maxlen` entries
and kept `stream_ttl_s` after the last one. Jobs keep their own streams (JobStreams);
a job's entry for its user's feed goes in the same script call as the job's own
(`JobStreams.append_many(..., also=...)`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from infra.live_streams import LiveStream, Mirror, StreamEvent, StreamPosition, StreamStore
from infra.redis import Arg, redis_errors
from infra.settings import Settings

__all__ = [
    "Channels",
    "Mirror",
    "batch_progress_feed",
    "channels_of",
    "conversation_channel",
    "job_status_feed",
    "user_channel",
]

# Live channels (infra.channels): one entry per key, in order. ARGV: maxlen, ttl,
# then a type and a body per key. Returns the ids.
_PUBLISH = r"""
local ids = {}
for k = 1, #KEYS do
  local i = 2 * k + 1
  ids[k] = redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[i], 'd', ARGV[i + 1])
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return ids
"""


def conversation_channel(conversation_id: uuid.UUID) -> str:
    return f"conversation:{conversation_id}"


def user_channel(tenant_id: uuid.UUID, user_id: str) -> str:
    """A user's feed: a user id is unique within its tenant only."""
    return f"user:{tenant_id}:{user_id}"


def channels_of(
    tenant_id: uuid.UUID, conversation_id: uuid.UUID | None, user_id: str | None
) -> list[str]:
    """Where a turn's live events go: its conversation's channel and its user's feed."""
    out = [conversation_channel(conversation_id)] if conversation_id else []
    if user_id:
        out.append(user_channel(tenant_id, user_id))
    return out


class Channels(StreamStore):
    """Live channels by name. `publish` appends to any number of them in one round trip."""

    def __init__(
        self, settings: Settings, max_connections: int = 200, read_connections: int = 8
    ) -> None:
        super().__init__(settings, max_connections, read_connections)
        self._publish = self._redis.register_script(_PUBLISH)

    def stream(self, channel: str) -> LiveStream:
        return LiveStream(self, self._channel_key(channel))

    async def publish(self, entries: list[Mirror]) -> list[str]:
        """(channel, event name, data) entries, appended in order by one script call;
        their ids, in the same order."""
        if not entries:
            return []
        keys: list[str] = []
        args: list[Arg] = [self._maxlen, self._ttl]
        for channel, type_, data in entries:
            keys.append(self._channel_key(channel))
            args += (type_, orjson.dumps(data))
        with redis_errors("publish"):
            ids: Any = await self._scripts.call(self._publish, keys, args)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def read(
        self,
        channel: str,
        after: str = "0-0",
        block_ms: int | None = 15_000,
        count: int = 500,
    ) -> list[StreamEvent]:
        """Entries after `after`, waiting up to `block_ms` for the first one (None: no wait)."""
        return await self._read(self._channel_key(channel), after, block_ms, count)

    async def position(self, channel: str, entry_id: str) -> StreamPosition | None:
        """Where `entry_id` stands in the channel; None when the channel has no entries."""
        return await self._position(self._channel_key(channel), entry_id)

    async def exists(self, channel: str) -> bool:
        return await self._exists(self._channel_key(channel))


def job_status_feed(
    tenant_id: uuid.UUID,
    user_id: str | None,
    job_id: uuid.UUID,
    status: str,
    kind: str,
    model: str | None,
) -> list[Mirror]:
    """A job's status change for its user's feed (`job.status`); nothing for a job of no
    user. Goes with the job's own entry: `JobStreams.append_many(..., also=...)`."""
    if not user_id:
        return []
    data = {"job_id": str(job_id), "status": status, "kind": kind, "model": model}
    return [(user_channel(tenant_id, user_id), "job.status", data)]


def batch_progress_feed(
    tenant_id: uuid.UUID, user_id: str | None, batch_id: str, data: dict[str, Any]
) -> list[Mirror]:
    """A batch's progress (its own stream's `data`, with its public id, `batch_…`) for its
    user's feed."""
    if not user_id:
        return []
    feed = {"batch_id": batch_id, **data}
    return [(user_channel(tenant_id, user_id), "batch.progress", feed)]
