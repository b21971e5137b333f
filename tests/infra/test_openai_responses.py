"""The Responses API adapter: the body it sends and how it reads the event stream."""

from __future__ import annotations

from typing import Any

import pytest

from infra.errors import PermanentError, TransientError
from infra.providers.base import ChatRequest, Image, Message, Tool, ToolCall
from infra.providers.openai_responses import _Reading, responses_body


def read(events: list[dict[str, Any]]) -> _Reading:
    reading = _Reading("openai")
    for event in events:
        reading.add(event)
    return reading


def completed(usage: dict[str, Any] | None, **response: Any) -> dict[str, Any]:
    return {
        "type": "response.completed",
        "response": {"status": "completed", "usage": usage, **response},
    }


REQUEST = ChatRequest(model="m", messages=[Message("user", "hi")])


def test_the_body_carries_every_message_kind_in_responses_shape() -> None:
    request = ChatRequest(
        model="gpt-5",
        messages=[
            Message("system", "rule one"),
            Message("system", "rule two"),
            Message("user", "look", parts=["look", Image("https://x/a.png", "low")]),
            Message("assistant", "calling", tool_calls=[ToolCall("c1", "find", '{"q":1}')]),
            Message("tool", "found", tool_call_id="c1"),
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
        tools=[Tool("find", None, {})],
        tool_choice="required",
        top_p=0.3,
        seed=7,
    )
    body = responses_body(request)
    assert body["instructions"] == "rule one\n\nrule two"
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/a.png", "detail": "low"},
        ]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "c1", "name": "find", "arguments": '{"q":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
    ]  # fmt: skip
    assert body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "out",
            "schema": {"type": "object"},
            "strict": True,
        }
    }
    assert body["tools"] == [
        {"type": "function", "name": "find",
         "parameters": {"type": "object", "properties": {}}, "strict": False}
    ]  # fmt: skip
    assert body["tool_choice"] == "required" and body["top_p"] == 0.3
    assert "seed" not in body and body["store"] is False and body["stream"] is True


def test_usage_and_cached_tokens_come_from_the_completed_event() -> None:
    usage = {"input_tokens": 10, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 4}}
    reading = read(
        [
            {"type": "response.output_text.delta", "delta": "a", "sequence_number": 3},
            {"type": "response.output_text.delta", "delta": "b", "sequence_number": 4},
            completed(usage),
        ]
    )
    completion = reading.completion(REQUEST)
    assert (completion.text, completion.finish_reason) == ("ab", "stop")
    assert (completion.input_tokens, completion.output_tokens) == (10, 3)
    assert completion.cached_input_tokens == 4 and not completion.usage_estimated


def test_a_function_call_item_becomes_a_tool_call_by_its_call_id() -> None:
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "f",
        "arguments": "{}",
    }
    reading = read([{"type": "response.output_item.done", "item": item}, completed(None)])
    completion = reading.completion(REQUEST)
    assert completion.tool_calls == [ToolCall("call_1", "f", "{}")]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage_estimated  # no usage: counted by the tokenizer


def test_an_answer_cut_by_max_output_tokens_finishes_with_length() -> None:
    incomplete = {
        "type": "response.incomplete",
        "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                     "usage": {"input_tokens": 1, "output_tokens": 1}},
    }  # fmt: skip
    reading = read([{"type": "response.output_text.delta", "delta": "x"}, incomplete])
    assert reading.completion(REQUEST).finish_reason == "length"


@pytest.mark.parametrize(
    ("event", "kind", "status"),
    [
        ({"type": "response.failed", "response": {"status": "failed",
          "error": {"code": "rate_limit_exceeded", "message": "slow down"}}}, TransientError, 429),
        ({"type": "response.failed", "response": {"status": "failed",
          "error": {"code": "server_error", "message": "oops"}}}, TransientError, 500),
        ({"type": "error", "code": "invalid_prompt", "message": "no"}, PermanentError, 400),
        ({"type": "error", "code": "something_new", "message": "?"}, PermanentError, 502),
    ],
)  # fmt: skip
def test_failures_in_the_stream_map_like_http_statuses(
    event: dict[str, Any], kind: type[Exception], status: int
) -> None:
    with pytest.raises(kind) as caught:
        read([event])
    assert type(caught.value) is kind
    assert getattr(caught.value, "status", None) == status
