"""A response's events as Server-Sent Events: live from the reply channel (the POST that
made it), or replayed from its job's stream and followed (`GET …?stream=true`), each from
after `starting_after`. Both number the events alike (response_events.ResponseEvents)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from infra.db import responses as store
from infra.errors import TransientError
from infra.live_streams import TERMINAL, StreamEvent
from producers.ingress.response_events import Base, ResponseEvents, stored_result
from producers.ingress.state import Services

KEEPALIVE_MS = 15_000


async def live_events(
    base: Base, next_entry: Callable[[], Awaitable[StreamEvent]]
) -> AsyncIterator[bytes]:
    """The events of a response as its entries reach this process. Past the wait's
    deadline the stream ends; `GET …?stream=true&starting_after=N` goes on from there."""
    events = ResponseEvents(base)
    for event in events.start():
        yield _sse(event)
    while events.final is None:
        try:
            entry = await next_entry()
        except TimeoutError:
            return
        for event in events.feed(entry):
            yield _sse(event)


async def forgetting(
    svc: Services, response_id: uuid.UUID, content: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in content:
            yield chunk
    finally:
        svc.replies.forget(response_id)


async def replay_events(
    svc: Services, tenant_id: uuid.UUID, base: Base, starting_after: int
) -> AsyncIterator[bytes]:
    """The response's events after `starting_after`, live until it ends."""
    response_id = base.response_id
    events = ResponseEvents(base)
    after = "0-0"
    for event in events.start():
        if event["sequence_number"] > starting_after:
            yield _sse(event)
    while events.final is None:
        try:
            entries = await svc.streams.read(response_id, after=after, block_ms=KEEPALIVE_MS)
        except TransientError:
            return  # the client resumes with starting_after and loses nothing
        if not entries:
            if not await svc.streams.exists(response_id):
                entries = await _expired(svc, tenant_id, response_id)
                if not entries:
                    return
            else:
                yield b": keepalive\n\n"
                continue
        for entry in entries:
            after = entry.id
            for event in events.feed(entry):
                if event["sequence_number"] > starting_after:
                    yield _sse(event)
            if entry.type == TERMINAL:
                return


async def _expired(
    svc: Services, tenant_id: uuid.UUID, response_id: uuid.UUID
) -> list[StreamEvent]:
    """The entries of a response whose live stream expired, from what is stored."""
    row = await store.get(svc.db, tenant_id, response_id)
    if row is None:
        return []
    output = [i.wire() for i in await store.items(svc.db, tenant_id, response_id, 1)]
    return stored_result(row, output)


def _sse(event: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event))
