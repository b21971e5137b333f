"""A job's events as Server-Sent Events, resumable by `Last-Event-ID`."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from infra.db import jobs as job_store
from infra.errors import TransientError
from infra.redis import TERMINAL, entry_order
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


async def resume_point(
    svc: Services,
    stream_id: uuid.UUID,
    last_event_id: str | None,
    *,
    finished: bool,
    replay_end: str = JOB_REPLAY_END,
) -> Resume:
    """Check a client's `Last-Event-ID` against the stream before answering.

    Once the live stream expired, the stored job (or batch) is replayed from the
    database with ids 0-1, 0-2 … up to `replay_end`, its `done`; `finished` says
    whether it has ended. Raises ApiError 400 for an id that is not one of the
    stream's, 503 when Redis is away.
    """
    if last_event_id is None or last_event_id == "":
        return Resume("0-0")
    match = _ENTRY_ID.fullmatch(last_event_id.strip())
    if match is None or any(int(part) > _MAX_ID_PART for part in match.groups()):
        raise _unknown_id(last_event_id)
    after = match.group(0)
    try:
        position = await svc.streams.position(stream_id, after)
    except TransientError as exc:
        raise unavailable("the event stream", exc) from exc
    if position is None:
        return Resume(after, ended=finished and entry_order(after) >= entry_order(replay_end))
    if not position.known:
        raise _unknown_id(last_event_id)
    return Resume(after, ended=position.ended)


def _unknown_id(value: str) -> ApiError:
    shown = value if len(value) <= 64 else value[:64] + "…"
    return ApiError(
        400,
        "invalid_request",
        f"header Last-Event-ID: {shown!r} is not an event id of this stream; "
        "reconnect without it to read the stream from the start",
        field="Last-Event-ID",
    )


async def ended_stream() -> AsyncIterator[bytes]:
    """The answer to a client that has seen the end already: nothing, closed at once."""
    return
    yield b""  # pragma: no cover - makes this an async generator


def _frame(event_id: str, type_: str, data: dict[str, Any]) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event_id.encode(),
        type_.encode(),
        orjson.dumps(data),
    )


def job_event_stream(
    svc: Services, tenant_id: uuid.UUID, job_id: uuid.UUID, after: str
) -> AsyncIterator[bytes]:
    """The stream after `after`, an id `resume_point` has checked. Once the live stream
    expired (or was never written), the stored job tells how it ended."""
    return follow(svc, job_id, after, lambda at: _from_database(svc, tenant_id, job_id, at))


async def follow(
    svc: Services,
    stream_id: uuid.UUID,
    after: str,
    expired: Callable[[str], AsyncIterator[bytes]],
) -> AsyncIterator[bytes]:
    """A live stream as Server-Sent Events, from after `after` to its terminal event, with
    keepalives; when the live stream is gone, what `expired(after)` yields instead."""
    yield b"retry: 1000\n\n"
    while True:
        try:
            events = await svc.streams.read(stream_id, after=after, block_ms=KEEPALIVE_MS)
        except TransientError:
            # End the response: the client reconnects with Last-Event-ID and loses nothing.
            return
        if not events:
            if not await svc.streams.exists(stream_id):
                async for frame in expired(after):
                    yield frame
                return
            yield b": keepalive\n\n"
            continue
        for event in events:
            yield _frame(event.id, event.type, event.data)
            after = event.id
            if event.type == TERMINAL:
                return


async def _from_database(
    svc: Services, tenant_id: uuid.UUID, job_id: uuid.UUID, after: str
) -> AsyncIterator[bytes]:
    found = await job_store.get_job(svc.db, tenant_id, job_id)
    if found is None:
        return
    job, result = found.job, found.result
    if job.status not in ("succeeded", "failed"):
        yield _frame("0-1", "status", {"status": job.status})
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
            yield _frame(frame_id, type_, data)
