"""GET /v1/ws: one WebSocket on which a client follows jobs, conversations and its user's feed.

JSON text frames. The client sends `{"type": "subscribe", "channel": ..., "after": ...}`
(`after`: the last id it saw, to resume with nothing lost or repeated) and
`{"type": "unsubscribe", "channel": ...}`. Channels: `job:<id>` (the job's stream, the
events of GET /v1/jobs/{id}/events; it ends after `done`), `conversation:<id>`, `user`
(a signed-in user's own feed) and `user:<user_id>` (a user's feed, for an API key). The
server sends `{"type": "subscribed", "channel"}`, then `{"type": "event", "channel",
"id", "event", "data"}` per entry; `{"type": "error", "message", "channel"?}` for a
refused or malformed message; `{"type": "ping"}` when it has been quiet for
AYUSH_WS_PING_S.

Memory stays bounded: each subscription is one task reading its Redis stream (a
blocking read with a deadline, as the SSE routes do) into the connection's queue of at
most AYUSH_WS_SEND_QUEUE messages, reading no more than the room left in it. A client
that lets the queue stay full, or a send take longer than AYUSH_WS_SEND_TIMEOUT_S, is
closed with 1008 "slow consumer". Each subscription takes an open-stream slot, and a
connection holds at most AYUSH_WS_MAX_SUBSCRIPTIONS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import WebSocket
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketState

from infra.channels import conversation_channel, user_channel
from infra.db import jobs as job_store
from infra.live_streams import TERMINAL, LiveStream, StreamEvent
from infra.stream_slots import StreamSlot
from infra.telemetry.metrics import Metrics
from producers.ingress.access import may
from producers.ingress.auth import authenticate_socket
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.event_streams import take_slot
from producers.ingress.job_stream import follow, job_replay, resume_point
from producers.ingress.live import live_channels, visible_conversation
from producers.ingress.scope import visible
from producers.ingress.state import Services
from schemas.conversations import parse_wire_id

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
SLOW = "slow consumer"
MAX_MESSAGE_CHARS = 4096
_CHANNEL = re.compile(r"(job|conversation):(.+)|user(?::(.{1,200}))?", re.DOTALL)
_PING = orjson.dumps({"type": "ping"}).decode()


class SlowConsumer(Exception):
    pass


@dataclass(frozen=True)
class Source:
    """What a subscription reads: a stream, how to tell its end, what replaces it once gone."""

    stream: LiveStream
    terminal: str | None
    expired: Callable[[str], AsyncIterator[StreamEvent]] | None = None
    finished: bool = False
    replay_end: str | None = None


class SocketStats:
    """The process's WebSockets, for /metrics: how many are open, the fullest send queue
    any has had (never above AYUSH_WS_SEND_QUEUE), and why the server closed some."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics
        self.queue_peak = 0

    def opened(self, delta: int) -> None:
        if self._metrics is not None:
            self._metrics.ws_open.inc(delta)

    def queued(self, size: int) -> None:
        if size > self.queue_peak:
            self.queue_peak = size
            if self._metrics is not None:
                self._metrics.ws_queue_peak.set(size)

    def closed(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.ws_closed.labels(reason).inc()


async def live_socket(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    try:
        caller = await authenticate_socket(websocket, svc)
    except ApiError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    stats: SocketStats = websocket.app.state.socket_stats
    stats.opened(1)
    try:
        await Connection(websocket, svc, caller, stats).run()
    finally:
        stats.opened(-1)


async def _refuse(websocket: WebSocket, exc: ApiError) -> None:
    """Refused before it is accepted: the HTTP answer where the server can send one
    (401/403 with our JSON body), else a close (1008), which the client sees as 403."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = {"error": exc.error, "message": exc.message}
        await websocket.send_denial_response(JSONResponse(body, exc.status, headers=exc.headers))
    else:
        await websocket.close(POLICY_VIOLATION, exc.message[:120])


class Connection:
    def __init__(self, websocket: WebSocket, svc: Services, caller: Caller, stats: SocketStats):
        self._ws = websocket
        self._svc = svc
        self._caller = caller
        self._stats = stats
        settings = svc.settings
        self._queue: asyncio.Queue[str] = asyncio.Queue(settings.ws_send_queue)
        self._send_timeout_s = settings.ws_send_timeout_s
        self._ping_s = settings.ws_ping_s
        self._max_subscriptions = settings.ws_max_subscriptions
        self._subscriptions: dict[str, asyncio.Task[None]] = {}
        self._slow = asyncio.Event()

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._receive()),
            asyncio.create_task(self._send()),
            asyncio.create_task(self._slow.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _stop({*tasks, *self._subscriptions.values()})
        if self._slow.is_set():
            self._stats.closed("slow_consumer")
            await self._close(POLICY_VIOLATION, SLOW)

    async def _close(self, code: int, reason: str) -> None:
        if self._ws.application_state != WebSocketState.CONNECTED:
            return
        # A client that reads nothing may never take the close frame either: give up on
        # it after the send timeout, and the server drops the connection.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._send_timeout_s):
                await self._ws.close(code, reason)

    # The client's messages.

    async def _receive(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self._error("send JSON text frames")
                continue
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        if len(text) > MAX_MESSAGE_CHARS:
            await self._error(f"a message is at most {MAX_MESSAGE_CHARS} characters")
            return
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._error("a message is a JSON object")
            return
        if not isinstance(message, dict):
            await self._error("a message is a JSON object")
            return
        kind, channel, after = message.get("type"), message.get("channel"), message.get("after")
        if kind not in ("subscribe", "unsubscribe"):
            await self._error('"type" is "subscribe" or "unsubscribe"')
            return
        if not isinstance(channel, str) or not channel:
            await self._error('"channel" is a string: job:<id>, conversation:<id>, user[:<id>]')
            return
        if after is not None and not isinstance(after, str):
            await self._error('"after" is the id of the last event seen', channel)
            return
        if kind == "unsubscribe":
            task = self._subscriptions.pop(channel, None)
            if task is not None:
                await _stop({task})  # nothing of it comes after the acknowledgement
            await self._put({"type": "unsubscribed", "channel": channel})
            return
        try:
            await self._subscribe(channel, after)
        except ApiError as exc:
            await self._error(exc.message, channel)

    async def _subscribe(self, channel: str, after: str | None) -> None:
        previous = self._subscriptions.pop(channel, None)
        if previous is not None:  # subscribing again: from the new `after`
            await _stop({previous})
        if len(self._subscriptions) >= self._max_subscriptions:
            raise ApiError(
                429,
                "too_many_subscriptions",
                f"this connection has {self._max_subscriptions} subscriptions, the most "
                "allowed (AYUSH_WS_MAX_SUBSCRIPTIONS): unsubscribe from one first",
            )
        source = await self._source(channel)
        resume = await resume_point(
            source.stream,
            after,
            finished=source.finished,
            replay_end=source.replay_end,
            field="after",
        )
        slot = None if resume.ended else await take_slot(self._svc, self._caller)
        await self._put({"type": "subscribed", "channel": channel})
        if slot is not None:
            task = asyncio.create_task(self._relay(channel, source, resume.after, slot))
            self._subscriptions[channel] = task
            task.add_done_callback(lambda t: self._forget(channel, t))

    def _forget(self, channel: str, task: asyncio.Task[None]) -> None:
        if self._subscriptions.get(channel) is task:
            del self._subscriptions[channel]

    async def _source(self, channel: str) -> Source:
        """The channel's stream, once the caller may read it; ApiError otherwise."""
        caller, svc = self._caller, self._svc
        match = _CHANNEL.fullmatch(channel)
        if match is None:
            raise ApiError(400, "invalid_request", f"unknown channel {channel[:80]!r}")
        kind, ident, user = match.groups()
        if kind == "job":
            self._require("jobs:read")
            job_id = _uuid(ident, channel, "resp")
            found = await job_store.get_job(svc.db, caller.tenant_id, job_id)
            if found is None or not visible(caller, found.job.user_id):
                raise ApiError(404, "not_found", f"no job {job_id}")
            return Source(
                svc.streams.stream(job_id),
                TERMINAL,
                lambda at: job_replay(svc, caller.tenant_id, job_id, at),
                finished=found.job.status in ("succeeded", "failed"),
                replay_end="0-3",
            )
        if kind == "conversation":
            self._require("conversations:read")
            conversation_id = _uuid(ident, channel, "conv")
            if not await visible_conversation(svc, caller, conversation_id):
                raise ApiError(404, "not_found", f"no conversation {conversation_id}")
            name = conversation_channel(conversation_id)
            return Source(live_channels(svc).stream(name), None)
        self._require("jobs:read")
        if user is None:
            if caller.user_id is None:
                raise ApiError(
                    400,
                    "invalid_request",
                    '"user" is a signed-in user\'s own feed: an API key names the user, '
                    "user:<user_id>",
                )
            user = caller.user_id
        elif caller.own_user is not None and user != caller.own_user:
            raise ApiError(403, "forbidden", "a signed-in user follows their own feed only")
        return Source(live_channels(svc).stream(user_channel(caller.tenant_id, user)), None)

    def _require(self, permission: str) -> None:
        caller = self._caller
        if not may(caller.role, caller.scopes, permission):
            raise ApiError(
                403,
                "forbidden",
                f"the {caller.role} role may not read this: it needs {permission}",
            )

    # Reading a subscription's stream into the queue.

    async def _relay(self, channel: str, source: Source, after: str, slot: StreamSlot) -> None:
        events = follow(
            source.stream,
            after,
            source.expired,
            terminal=source.terminal,
            count=self._room,
        )
        last: str | None = None
        try:
            async for event in events:
                if event is None:
                    continue  # the connection's pings keep it alive
                last = event.type
                await self._put(
                    {
                        "type": "event",
                        "channel": channel,
                        "id": event.id,
                        "event": event.type,
                        "data": event.data,
                    }
                )
            if source.terminal is None or last != source.terminal:
                # Redis failed under the read: say so, the client resubscribes with `after`.
                await self._error("the stream broke off: subscribe again with after", channel)
        except SlowConsumer:
            return
        finally:
            await events.aclose()
            await self._svc.slots.release(slot)

    def _room(self) -> int:
        return max(1, self._queue.maxsize - self._queue.qsize())

    # The server's messages.

    async def _error(self, message: str, channel: str | None = None) -> None:
        error: dict[str, Any] = {"type": "error", "message": message}
        if channel is not None:
            error["channel"] = channel
        with contextlib.suppress(SlowConsumer):
            await self._put(error)

    async def _put(self, message: dict[str, Any]) -> None:
        """Queue a message for the client; SlowConsumer when the queue stays full."""
        text = orjson.dumps(message).decode()
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._queue.put(text)
        except TimeoutError:
            self._slow.set()
            raise SlowConsumer() from None
        self._stats.queued(self._queue.qsize())

    async def _send(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._ping_s):
                    text = await self._queue.get()
            except TimeoutError:
                text = _PING
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await self._ws.send_text(text)
            except TimeoutError:
                self._slow.set()
                return


async def _stop(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them to end, cancelling again while one runs on: a
    Redis read can swallow one cancellation and block on (the SSE routes are cancelled
    the same way, again and again, by their task group)."""
    while tasks:
        for task in tasks:
            task.cancel()
        done, tasks = await asyncio.wait(tasks, timeout=0.5)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                # A send to a client that left, mostly: the connection ends either way.
                log.debug("live socket task ended: %r", task.exception())


def _uuid(value: str, channel: str, prefix: str) -> uuid.UUID:
    """The id of a channel: a uuid, or the API's wire id (`conv_…`; a response's `resp_…`
    is the id of the job that runs it)."""
    found = parse_wire_id(value, prefix)
    if found is None:
        raise ApiError(400, "invalid_request", f"unknown channel {channel[:80]!r}")
    return found
