"""Live channels, as the Responses API and the model-calls worker see them: a small port.

The live-channel adapter (SSE and WebSocket fan-out) implements `ChannelPublisher`; it is
optional everywhere (None: nothing is published live). A publish that fails is logged by
the caller and never fails the request or the job: the channels are a courtesy, the
stored items and the job's stream are the record.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

# (channel, event, data)
ChannelEntry = tuple[str, str, dict[str, Any]]


class ChannelPublisher(Protocol):
    async def publish(self, entries: list[ChannelEntry]) -> list[str]: ...


def conversation_channel(conversation_id: uuid.UUID) -> str:
    return f"conversation:{conversation_id}"


def user_channel(tenant_id: uuid.UUID, user_id: str) -> str:
    return f"user:{tenant_id}:{user_id}"


def channels_of(
    tenant_id: uuid.UUID, conversation_id: uuid.UUID | None, user_id: str | None
) -> list[str]:
    """Where a turn's live events go: its conversation's channel and its user's."""
    out = [conversation_channel(conversation_id)] if conversation_id else []
    if user_id:
        out.append(user_channel(tenant_id, user_id))
    return out
