"""A response's job stream entries as OpenAI's Responses objects and stream events.

The job's Redis stream carries `status`, `delta`, `result`, `error` and `done` entries
(the same for every kind of job). `ResponseEvents` turns them, in order, into the
Responses event stream: response.created, response.in_progress, output items with their
content parts and text deltas, function calls with their arguments, then
response.completed (or .failed / .incomplete). The translation is deterministic: the
same entries give the same events with the same sequence numbers, so a client resuming
with `starting_after=N` gets exactly what came after N. The item ids are derived from
the response id (schemas.responses_api.output_items), as the worker stores them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from infra.db.conversation_models import ResponseRecord
from infra.live_streams import StreamEvent
from schemas.conversations import conversation_wire_id, response_wire_id
from schemas.responses_api import error_code, output_items

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True)
class Base:
    """What a Response object says of its request, whatever its state."""

    response_id: uuid.UUID
    created_at: int
    model: str
    params: dict[str, Any]
    previous_response_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    store: bool
    background: bool
    user: str | None


def base_of(row: ResponseRecord) -> Base:
    return Base(
        response_id=row.id,
        created_at=int(row.created_at.timestamp()),
        model=row.model,
        params=row.params,
        previous_response_id=row.previous_response_id,
        conversation_id=row.conversation_id,
        store=row.store,
        background=row.background,
        user=row.user_id,
    )


def usage_wire(input_tokens: int, output_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def render(
    base: Base,
    status: str,
    output: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete: str | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The Response object (`output_text` is the SDK's own sum of the output)."""
    p = base.params
    return {
        "id": response_wire_id(base.response_id),
        "object": "response",
        "created_at": base.created_at,
        "completed_at": completed_at,
        "status": status,
        "background": base.background,
        "model": base.model,
        "output": output or [],
        "usage": usage,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": p.get("instructions"),
        "metadata": p.get("metadata") or {},
        "tools": p.get("tools") or [],
        "tool_choice": p.get("tool_choice", "auto"),
        "temperature": p.get("temperature"),
        "top_p": p.get("top_p"),
        "max_output_tokens": p.get("max_output_tokens"),
        "previous_response_id": response_wire_id(base.previous_response_id)
        if base.previous_response_id
        else None,
        "conversation": {"id": conversation_wire_id(base.conversation_id)}
        if base.conversation_id
        else None,
        "store": base.store,
        "text": p.get("text") or {"format": {"type": "text"}},
        "truncation": p.get("truncation", "disabled"),
        "parallel_tool_calls": p.get("parallel_tool_calls", True),
        "user": base.user,
    }


def stored_result(row: ResponseRecord, output: list[dict[str, Any]]) -> list[StreamEvent]:
    """The entries a finished response's stream had, rebuilt from its row and output
    items (once the live stream expired)."""
    events: list[StreamEvent] = []
    if row.status in ("completed", "incomplete"):
        text = "".join(
            part.get("text", "")
            for item in output
            if item["type"] == "message"
            for part in item["content"]
        )
        calls = [
            {"id": i["call_id"], "name": i["name"], "arguments": i["arguments"]}
            for i in output
            if i["type"] == "function_call"
        ]
        usage = row.usage or {}
        result = {
            "text": text,
            "tool_calls": calls or None,
            "finish_reason": "length" if row.status == "incomplete" else "stop",
            "usage": {
                "input_tokens": usage.get("input_tokens", 0),
                "output_tokens": usage.get("output_tokens", 0),
            },
        }
        events.append(StreamEvent("0-2", "result", result))
    elif row.status in ("failed", "cancelled"):
        error = row.error or {}
        events.append(
            StreamEvent(
                "0-2", "error", {"message": error.get("message"), "code": error.get("code")}
            )
        )
    else:
        return events
    events.append(StreamEvent("0-3", "done", {}))
    return events


def _runs(entry: StreamEvent) -> bool:
    """Whether the entry shows the answer coming. Status entries do not count: a caller
    waiting on the reply channel does not get them, and both ways must number alike."""
    return entry.type in ("delta", "result")


class ResponseEvents:
    """Entries in, Responses stream events out, numbered from 0 without gaps."""

    def __init__(self, base: Base) -> None:
        self.base = base
        self.final: dict[str, Any] | None = None  # the Response object once it ended
        self._seq = 0
        self._started = False
        self._running = False
        self._text: str | None = None  # the message's text so far, once it is open
        self._message_id = output_items(base.response_id, "x", None, 0)[0].id

    def start(self) -> list[dict[str, Any]]:
        self._started = True
        status = "queued" if self.base.background else "in_progress"
        return [self._event("response.created", response=render(self.base, status))]

    def feed(self, entry: StreamEvent) -> list[dict[str, Any]]:
        out = [] if self._started else self.start()
        if self.final is not None:
            return out
        if not self._running and _runs(entry):
            self._running = True
            out.append(
                self._event("response.in_progress", response=render(self.base, "in_progress"))
            )
        if entry.type == "delta":
            out += self._delta(str(entry.data.get("text", "")))
        elif entry.type == "result":
            out += self._result(entry.data)
        elif entry.type == "error":
            out += self._error(entry.data)
        return out

    # text --------------------------------------------------------------------------
    def _open_message(self) -> list[dict[str, Any]]:
        self._text = ""
        item = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self._event("response.output_item.added", output_index=0, item=item),
            self._event(
                "response.content_part.added",
                item_id=self._message_id,
                output_index=0,
                content_index=0,
                part=part,
            ),
        ]

    def _delta(self, text: str) -> list[dict[str, Any]]:
        out = self._open_message() if self._text is None else []
        self._text = (self._text or "") + text
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=self._message_id,
                output_index=0,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    # the end -----------------------------------------------------------------------
    def _result(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        text = data.get("text") or ""
        incomplete = _INCOMPLETE.get(data.get("finish_reason") or "")
        items = [
            s.wire()
            for s in output_items(
                self.base.response_id,
                text,
                data.get("tool_calls"),
                0,
                "incomplete" if incomplete else "completed",
            )
        ]
        out: list[dict[str, Any]] = []
        if text and self._text is None:
            out += self._delta(text)  # a cached answer (or one that came whole)
        index = 0
        if text:
            part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
            ids: dict[str, Any] = {
                "item_id": self._message_id,
                "output_index": 0,
                "content_index": 0,
            }
            out += [
                self._event("response.output_text.done", **ids, text=text, logprobs=[]),
                self._event("response.content_part.done", **ids, part=part),
                self._event("response.output_item.done", output_index=0, item=items[0]),
            ]
            index = 1
        for item in items[index:]:
            added = {**item, "arguments": "", "status": "in_progress"}
            ids = {"item_id": item["id"], "output_index": index}
            out += [
                self._event("response.output_item.added", output_index=index, item=added),
                self._event(
                    "response.function_call_arguments.delta", **ids, delta=item["arguments"]
                ),
                self._event(
                    "response.function_call_arguments.done",
                    **ids,
                    name=item["name"],
                    arguments=item["arguments"],
                ),
                self._event("response.output_item.done", output_index=index, item=item),
            ]
            index += 1
        usage = data.get("usage") or {}
        status = "incomplete" if incomplete else "completed"
        self.final = render(
            self.base,
            status,
            items,
            usage_wire(
                usage.get("input_tokens", 0),
                usage.get("output_tokens", 0),
                usage.get("cached_input_tokens", 0),
            ),
            incomplete=incomplete,
            completed_at=data.get("completed_at"),
        )
        out.append(self._event(f"response.{status}", response=self.final))
        return out

    def _error(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        code = error_code(data.get("status"), data.get("code"))
        status = "cancelled" if code == "cancelled" else "failed"
        error = {"code": code, "message": str(data.get("message") or "failed")}
        self.final = render(self.base, status, error=error)
        return [self._event("response.failed", response=self.final)]

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event
