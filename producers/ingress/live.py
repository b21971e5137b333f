"""GET /v1/conversations/{id}/events: a conversation's live channel as Server-Sent Events.

What the conversation's channel (infra.channels.conversation_channel) carries, from the
start or, with `Last-Event-ID`, from after that id; keepalives while it is quiet. A
conversation has no last event: the stream stays open until the client leaves. It takes
an open-stream slot (producers.ingress.event_streams) like every event stream.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header
from starlette.responses import StreamingResponse

from infra.channels import Channels, conversation_channel
from infra.db import conversations
from producers.ingress.auth import Authenticated
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.event_streams import slot_stream, take_slot
from producers.ingress.job_stream import follow, resume_point, sse
from producers.ingress.scope import visible
from producers.ingress.state import Services, Svc
from schemas.conversations import parse_wire_id

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


async def conversation_owner(
    svc: Services, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> str | Literal[False] | None:
    """The user a conversation of this tenant belongs to (None: made by an API key for no
    user), or False when the tenant has no such conversation."""
    found = await conversations.get(svc.db, tenant_id, conversation_id)
    if found is None:
        return False
    return found.user_id


async def visible_conversation(svc: Services, caller: Caller, conversation_id: uuid.UUID) -> bool:
    """Whether the caller's tenant has this conversation and the caller may see it."""
    owner = await conversation_owner(svc, caller.tenant_id, conversation_id)
    return owner is not False and visible(caller, owner)


def live_channels(svc: Services) -> Channels:
    if svc.channels is None:
        raise ApiError(503, "unavailable", "live channels are not served here")
    return svc.channels


@router.get("/{conversation_id}/events")
async def conversation_events(
    conversation_id: str,
    caller: Authenticated,
    svc: Svc,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The conversation's live events (conv_… or its uuid), resumable by Last-Event-ID."""
    found = parse_wire_id(conversation_id, "conv")
    if found is None or not await visible_conversation(svc, caller, found):
        raise ApiError(404, "not_found", f"no conversation {conversation_id[:80]}")
    stream = live_channels(svc).stream(conversation_channel(found))
    resume = await resume_point(stream, last_event_id, replay_end=None)
    slot = await take_slot(svc, caller)
    return slot_stream(svc, slot, sse(follow(stream, resume.after, terminal=None)))
