"""The frames of the WebSocket `GET /v1/ws` (JSON text frames), for the AsyncAPI document.

The client subscribes to channels (`job:<id>`, `conversation:<id>`, `user`,
`user:<user_id>`) and unsubscribes; the server acknowledges, sends each channel's events
with their ids (a resume is a subscribe with `after` = the last id seen), errors, and pings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CHANNEL = Field(
    max_length=300,
    description="job:<id> (or resp_…), conversation:<id> (or conv_…), user, user:<user_id>",
)


class Subscribe(BaseModel):
    """Follow a channel: everything after `after` (every entry kept, without it), then live."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe"]
    channel: str = CHANNEL
    after: str | None = Field(default=None, description="the id of the last event seen")


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["unsubscribe"]
    channel: str = CHANNEL


class Subscribed(BaseModel):
    type: Literal["subscribed"]
    channel: str


class Unsubscribed(BaseModel):
    type: Literal["unsubscribed"]
    channel: str


class LiveEvent(BaseModel):
    """One entry of a channel: the same event names and data as its SSE stream."""

    type: Literal["event"]
    channel: str
    id: str = Field(description="the entry's id: resume after it with `after`")
    event: str = Field(description="status, delta, result, error, done (jobs); job.status, "
                       "batch.progress, response.created, conversation.item.added, "
                       "response.output_text.delta, response.completed … (channels)")  # fmt: skip
    data: dict[str, Any]


class LiveError(BaseModel):
    """A refused or malformed message; the socket stays open."""

    type: Literal["error"]
    message: str
    channel: str | None = None


class Ping(BaseModel):
    """A heartbeat after AYUSH_WS_PING_S of quiet."""

    type: Literal["ping"]


CLIENT: tuple[type[BaseModel], ...] = (Subscribe, Unsubscribe)
SERVER: tuple[type[BaseModel], ...] = (Subscribed, Unsubscribed, LiveEvent, LiveError, Ping)
