"""A response turn's items as the chat messages its model call sends."""

from __future__ import annotations

import uuid

from consumers.groups.model_calls.turns import as_messages
from schemas.conversations import ItemIn, StoredItem
from schemas.jobs import ImagePart, TextPart, ToolCall
from schemas.responses_api import input_items

PNG = "data:image/png;base64,iVBORw0KGgo="


def items(*raw: dict[str, object]) -> list[StoredItem]:
    return input_items(uuid.uuid4(), [ItemIn.model_validate(r).item for r in raw], 0)


def test_developer_is_system_and_function_calls_join_the_assistants_message() -> None:
    messages = as_messages(
        items(
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "let me look"},
            {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "b", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": "warm"},
        )
    )
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2].content == "let me look"
    assert messages[2].tool_calls == [
        ToolCall(id="c1", name="a", arguments="{}"),
        ToolCall(id="c2", name="b", arguments="{}"),
    ]
    assert (messages[3].tool_call_id, messages[3].content) == ("c1", "sunny")


def test_function_calls_without_words_are_one_assistant_message() -> None:
    messages = as_messages(
        items(
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "c1", "name": "a"},
            {"type": "function_call", "call_id": "c2", "name": "b"},
        )
    )
    assert [m.role for m in messages] == ["user", "assistant"]
    assert [c.id for c in messages[1].tool_calls or ()] == ["c1", "c2"]


def test_images_become_parts_in_their_order() -> None:
    [message] = as_messages(
        items(
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is"},
                    {"type": "input_image", "image_url": PNG, "detail": "low"},
                    {"type": "input_text", "text": "this?"},
                ],
            }
        )
    )
    assert message.content == "what isthis?"
    assert message.parts == [
        TextPart(text="what is"),
        ImagePart(url=PNG, detail="low"),
        TextPart(text="this?"),
    ]


def test_a_remembered_response_turn_keeps_the_users_words() -> None:
    from consumers.jobs.memory_recall import remember_exchange
    from schemas.envelope import Actor, Envelope
    from schemas.memory import MemoryContext
    from schemas.responses_api import ResponseRequest, response_job

    body = ResponseRequest.model_validate(
        {"model": "gpt-fake", "input": "my cat is called Tom", "user_id": "u1"}
    )
    job = response_job(body, uuid.uuid4(), 0, previous_response_id=None, conversation_id=None)
    job = job.model_copy(update={"memory": MemoryContext(user_id="u1", remember=True)})
    raw = Envelope[dict[str, str]](
        type="x",
        tenant_id=uuid.uuid4(),
        actor=Actor(kind="system", id="t"),
        correlation_id=uuid.uuid4(),
        payload={},
    )
    [(_, event)] = remember_exchange(raw, job, "noted", Actor(kind="system", id="t"))
    assert event.payload.text == "user: my cat is called Tom\nassistant: noted"
