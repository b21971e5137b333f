"""A response's job stream entries as Responses stream events: deterministic, numbered."""

from __future__ import annotations

import uuid

from infra.live_streams import StreamEvent
from producers.ingress.response_events import Base, ResponseEvents
from schemas.conversations import item_id
from schemas.ids import uuid7


def base(response_id: uuid.UUID, background: bool = False) -> Base:
    return Base(response_id, 0, "gpt-fake", {}, None, None, True, background, None)


ENTRIES = [
    StreamEvent("1-0", "status", {"status": "queued"}),
    StreamEvent("1-1", "status", {"status": "running"}),
    StreamEvent("1-2", "delta", {"text": "hel"}),
    StreamEvent("1-3", "delta", {"text": "lo"}),
    StreamEvent(
        "1-4",
        "result",
        {
            "text": "hello",
            "finish_reason": "tool_calls",
            "usage": {"input_tokens": 3, "output_tokens": 2},
            "tool_calls": [{"id": "call_1", "name": "f", "arguments": '{"a": 1}'}],
        },
    ),
    StreamEvent("1-5", "done", {"status": "succeeded"}),
]


def translate(response_id: uuid.UUID) -> list[dict[str, object]]:
    events = ResponseEvents(base(response_id, background=True))
    return [e for entry in ENTRIES for e in events.feed(entry)]


def test_the_same_entries_give_the_same_events_numbered_from_zero() -> None:
    response_id = uuid7()
    events = translate(response_id)
    assert events == translate(response_id)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "queued"  # type: ignore[index]


def test_item_ids_are_the_stored_ones() -> None:
    response_id = uuid7()
    events = translate(response_id)
    final = events[-1]["response"]
    assert [o["id"] for o in final["output"]] == [  # type: ignore[index]
        item_id("msg", response_id, 0),
        item_id("fc", response_id, 0),
    ]
    assert events[4]["item_id"] == item_id("msg", response_id, 0)


def test_an_error_fails_the_response_and_a_cancel_cancels_it() -> None:
    events = ResponseEvents(base(uuid7()))
    out = events.feed(StreamEvent("1-0", "error", {"message": "boom", "status": 500}))
    assert [e["type"] for e in out] == ["response.created", "response.failed"]
    assert events.final is not None and events.final["error"]["code"] == "server_error"

    cancelled = ResponseEvents(base(uuid7()))
    cancelled.feed(StreamEvent("1-0", "error", {"message": "stop", "code": "cancelled"}))
    assert cancelled.final is not None and cancelled.final["status"] == "cancelled"


def test_a_cut_answer_is_incomplete() -> None:
    events = ResponseEvents(base(uuid7()))
    out = events.feed(StreamEvent("1-0", "result", {"text": "hi", "finish_reason": "length"}))
    assert out[-1]["type"] == "response.incomplete"
    assert events.final is not None
    assert events.final["incomplete_details"] == {"reason": "max_output_tokens"}
