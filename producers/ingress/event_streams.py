"""Server-Sent Event responses under the open-stream limits (infra.stream_slots).

Every streaming route takes a slot before it starts any work and answers
with a `SlotStream`, which gives the slot back when the response ends,
however it ends (the client left, the job finished, the server stops).
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from infra.errors import TransientError
from infra.stream_slots import StreamLimit, StreamSlot, StreamSlots
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.state import Services

SSE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_RETRY = {"Retry-After": "1"}
_SETTING = {"key": "AYUSH_MAX_STREAMS_PER_KEY", "tenant": "AYUSH_MAX_STREAMS_PER_TENANT"}
_HOLDER = {"key": "this API key", "tenant": "this tenant"}


class SlotStream(StreamingResponse):
    def __init__(
        self,
        content: AsyncIterable[bytes],
        slots: StreamSlots,
        slot: StreamSlot,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=SSE, headers=headers)
        self._slots = slots
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._slots.release(self._slot)


async def take_slot(svc: Services, caller: Caller) -> StreamSlot:
    """A slot for one more open stream of this key; ApiError 429 past a limit."""
    try:
        return await svc.slots.take(caller.tenant_id, caller.subject_id)
    except StreamLimit as exc:
        if exc.scope == "process":
            raise ApiError(
                503,
                "too_many_streams",
                f"this server has {exc.limit} event streams open, all it serves: retry shortly",
                _RETRY,
            ) from exc
        raise ApiError(
            429,
            "too_many_streams",
            f"{_HOLDER[exc.scope]} has {exc.limit} event streams open, the most allowed "
            f"({_SETTING[exc.scope]}): close one before opening another",
            _RETRY,
        ) from exc
    except TransientError as exc:
        raise unavailable("event streams", exc) from exc


def slot_stream(
    svc: Services,
    slot: StreamSlot,
    content: AsyncIterable[bytes],
    headers: dict[str, str] | None = None,
) -> SlotStream:
    return SlotStream(content, svc.slots, slot, {**SSE_HEADERS, **(headers or {})})
