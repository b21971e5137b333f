"""Fitting a history to a context window: whole turns dropped, oldest first."""

from __future__ import annotations

import pytest

from consumers.jobs.context import fit, output_reserve
from infra.errors import ContextTooLong, PermanentError
from infra.providers import tokens
from infra.providers.base import Message, ToolCall

WORDS = " ".join(f"word{i}" for i in range(60))  # some 120 tokens


def history(turns: int) -> list[Message]:
    out = [Message("system", "you are terse")]
    for i in range(turns):
        out += [
            Message("user", f"question {i} {WORDS}"),
            Message("assistant", f"answer {i} {WORDS}"),
        ]
    return out


def size(messages: list[Message]) -> int:
    return tokens.count_prompt(messages)


def test_a_history_that_fits_is_sent_whole_with_its_estimate() -> None:
    messages = history(2)
    fitted = fit(messages, 100_000, 500, truncation="disabled")
    assert fitted.messages == messages and fitted.dropped == 0
    assert fitted.input_tokens == size(messages)


def test_an_unknown_window_fits_anything() -> None:
    messages = history(50)
    fitted = fit(messages, None, None, truncation="disabled")
    assert fitted.messages == messages and fitted.dropped == 0


def test_auto_drops_the_oldest_turns_whole_and_keeps_the_system_message() -> None:
    messages = history(6)
    messages.append(Message("user", "the newest question"))
    window = size(messages[:1] + messages[-5:]) + 100
    fitted = fit(messages, window, 100, truncation="auto", model="m")
    # the system message, then the newest whole turns only
    assert fitted.messages[0] == messages[0]
    assert fitted.messages[1:] == messages[-5:]
    assert fitted.dropped == len(messages) - 6
    assert fitted.input_tokens == size(fitted.messages)
    assert fitted.input_tokens + 100 <= window
    assert fitted.messages[1].role == "user"  # never starts mid-turn


def test_a_tool_result_is_dropped_with_the_call_that_asked_for_it() -> None:
    call = ToolCall("c1", "lookup", '{"q": "' + WORDS + '"}')
    messages = [
        Message("system", "s"),
        Message("user", f"first {WORDS}"),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", f"result {WORDS}", tool_call_id="c1"),
        Message("assistant", f"so {WORDS}"),
        Message("user", "second"),
        Message("assistant", "", tool_calls=[ToolCall("c2", "lookup", "{}")]),
        Message("tool", "ok", tool_call_id="c2"),
    ]
    fitted = fit(messages, size([messages[0], *messages[5:]]) + 50, 40, truncation="auto")
    assert fitted.messages == [messages[0], *messages[5:]]
    ids = {c.id for m in fitted.messages for c in m.tool_calls}
    assert all(m.tool_call_id in ids for m in fitted.messages if m.role == "tool")


def test_disabled_truncation_refuses_naming_the_overflow() -> None:
    messages = history(6)
    with pytest.raises(ContextTooLong) as caught:
        fit(messages, 1000, 200, truncation="disabled", model="gpt-fake")
    error = caught.value
    assert isinstance(error, PermanentError) and error.status == 400
    assert error.code == "context_length_exceeded"
    assert str(error) == (
        f"input of ~{size(messages)} tokens exceeds the context window of 1000 tokens of model "
        "gpt-fake; set truncation to auto to drop older turns"
    )


def test_auto_refuses_when_the_newest_turn_alone_does_not_fit() -> None:
    messages = [*history(1), Message("user", WORDS * 10)]
    with pytest.raises(ContextTooLong, match="newest turn alone does not fit"):
        fit(messages, 1000, 100, truncation="auto", model="m")


def test_the_answer_needs_room_too() -> None:
    messages = history(1)
    window = size(messages) + 10
    assert fit(messages, window, 10, truncation="disabled").dropped == 0
    with pytest.raises(ContextTooLong):
        fit(messages, window, 11, truncation="disabled")
    # without max_output_tokens a reserve is kept: a quarter of a small window
    assert output_reserve(4000, None) == 1000 and output_reserve(400_000, None) == 4096


def test_overhead_beside_the_messages_counts() -> None:
    messages = history(1)
    window = size(messages) + 10
    with pytest.raises(ContextTooLong):
        fit(messages, window, 10, truncation="disabled", overhead=1)
