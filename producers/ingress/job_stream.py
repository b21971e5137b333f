"""Live streams as Server-Sent Events, resumable by `Last-Event-ID`: a job's, a batch's,
a live channel's (producers.ingress.live). `follow` reads any `LiveStream`; the WebSocket
(producers.ingress.live_socket) reads through it too."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from infra.db import jobs as job_store
from infra.errors import TransientError
from infra.live_streams import TERMINAL, LiveStream, StreamEvent, entry_order
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.state import Services
from schemas.money import usd_text

KEEPALIVE_MS = 15_000
# The ids the streams give: Redis stream entry ids, "<milliseconds>-<sequence>".
_ENTRY_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_MAX_ID_PART = 2**64 - 1
# The id of the last frame of a finished job replayed from the database.
JOB_REPLAY_END = "0-3"


@dataclass(frozen=True)
class Resume:
    """Where a (re)connecting client starts: after `after`; `ended` when it has already
    seen the stream's end, so its answer is an empty stream that closes at once."""

    after: str
    ended: bool = False


def parse_event_id(value: str, field: str = "Last-Event-ID") -> str:
    """A well-formed stream id ("<milliseconds>-<sequence>"); ApiError 400 otherwise."""
    match = _ENTRY_ID.fullmatch(value.strip())
    if match is None or any(int(part) > _MAX_ID_PART for part in match.groups()):
        raise _unknown_id(value, field)
    return match.group(0)


async def resume_point(
    stream: LiveStream,
    last_event_id: str | None,
    *,
    finished: bool = False,
    replay_end: str | None = JOB_REPLAY_END,
    field: str = "Last-Event-ID",
) -> Resume:
    """Check a client's `Last-Event-ID` (or a WebSocket's `after`) against the stream
    before answering.

    Once a job's (or batch's) live stream expired, the stored job is replayed from the
    database with ids 0-1, 0-2 … up to `replay_end`, its `done`; `finished` says
    whether it has ended. A live channel has no replay (`replay_end` None) and no end.
    Raises ApiError 400 for an id that is not one of the stream's, 503 when Redis is away.
    """
    if last_event_id is None or last_event_id == "":
        return Resume("0-0")
    after = parse_event_id(last_event_id, field)
    try:
        position = await stream.position(after)
    except TransientError as exc:
        raise unavailable("the event stream", exc) from exc
    if position is None:
        if replay_end is None:
            # A channel with nothing in it (yet, or any more): wait for what comes next.
            return Resume(after)
        return Resume(after, ended=finished and entry_order(after) >= entry_order(replay_end))
    if not position.known:
        raise _unknown_id(last_event_id, field)
    return Resume(after, ended=position.ended)


def _unknown_id(value: str, field: str = "Last-Event-ID") -> ApiError:
    shown = value if len(value) <= 64 else value[:64] + "…"
    where = f"header {field}" if field == "Last-Event-ID" else f"field {field}"
    return ApiError(
        400,
        "invalid_request",
        f"{where}: {shown!r} is not an event id of this stream; "
        "reconnect without it to read the stream from the start",
        field=field,
    )


async def ended_stream() -> AsyncIterator[bytes]:
    """The answer to a client that has seen the end already: nothing, closed at once."""
    return
    yield b""  # pragma: no cover - makes this an async generator


def frame(event: StreamEvent) -> bytes:
    """One Server-Sent Event."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.id.encode(),
        event.type.encode(),
        orjson.dumps(event.data),
    )


def job_event_stream(
    svc: Services, tenant_id: uuid.UUID, job_id: uuid.UUID, after: str
) -> AsyncIterator[bytes]:
    """The stream after `after`, an id `resume_point` has checked. Once the live stream
    expired (or was never written), the stored job tells how it ended."""
    events = follow(
        svc.streams.stream(job_id), after, lambda at: job_replay(svc, tenant_id, job_id, at)
    )
    return sse(events)


async def sse(events: AsyncIterator[StreamEvent | None]) -> AsyncIterator[bytes]:
    """`follow`'s events as Server-Sent Events, a comment for each keepalive."""
    yield b"retry: 1000\n\n"
    async for event in events:
        yield b": keepalive\n\n" if event is None else frame(event)


async def follow(
    stream: LiveStream,
    after: str,
    expired: Callable[[str], AsyncIterator[StreamEvent]] | None = None,
    *,
    terminal: str | None = TERMINAL,
    keepalive_ms: int = KEEPALIVE_MS,
    count: Callable[[], int] = lambda: 500,
) -> AsyncGenerator[StreamEvent | None, None]:
    """A live stream's events from after `after` to its `terminal` event, and None after
    each `keepalive_ms` without one (a keepalive is due). When the stream is gone, what
    `expired(after)` yields instead; without `expired` (a live channel, which has no end
    and may not exist yet) it waits on. Ends quietly when Redis fails: the client
    reconnects from the last id it saw and loses nothing. `count()`: the most entries one
    read takes (a WebSocket's room left in its send queue)."""
    while True:
        try:
            events = await stream.read(after=after, block_ms=keepalive_ms, count=count())
            if not events and expired is not None and not await stream.exists():
                async for event in expired(after):
                    yield event
                return
        except TransientError:
            return
        if not events:
            yield None
            continue
        for event in events:
            yield event
            after = event.id
            if terminal is not None and event.type == terminal:
                return


async def job_replay(
    svc: Services, tenant_id: uuid.UUID, job_id: uuid.UUID, after: str
) -> AsyncIterator[StreamEvent]:
    """A job whose live stream is gone, told by its stored row, after `after`."""
    found = await job_store.get_job(svc.db, tenant_id, job_id)
    if found is None:
        return
    job, result = found.job, found.result
    if job.status not in ("succeeded", "failed"):
        yield StreamEvent("0-1", "status", {"status": job.status})
        return
    frames: list[tuple[str, str, dict[str, Any]]] = [
        ("0-1", "status", {"status": job.status, "provider": job.provider})
    ]
    if result is not None:
        usage = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
        frames.append(
            (
                "0-2",
                "result",
                {
                    "text": result.text,
                    "finish_reason": result.finish_reason,
                    "provider": result.provider,
                    "model": result.model,
                    "usage": usage,
                    "cost_usd": usd_text(result.cost_usd),
                },
            )
        )
    else:
        frames.append(("0-2", "error", {"message": job.error or "failed"}))
    frames.append((JOB_REPLAY_END, TERMINAL, {"status": job.status}))
    for frame_id, type_, data in frames:
        # A client that resumes the replay gets only what it has not seen.
        if entry_order(frame_id) > entry_order(after):
            yield StreamEvent(frame_id, type_, data)
