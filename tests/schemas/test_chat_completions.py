"""One converter for the gateway's bodies and batch lines: what it keeps, what it refuses."""

from __future__ import annotations

import pytest

from schemas.chat_completions import BodyError, chat_job_from_body
from schemas.jobs import ForcedTool

TEXT_PARTS = [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def test_a_batch_body_keeps_tools_choice_stop_and_limits() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": TEXT_PARTS},
        ],
        "tools": [LOOKUP],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "stop": "END",
        "max_completion_tokens": 50,
        "temperature": 0.5,
        "metadata": {"team": "x"},
        "user": "u1",
    }  # fmt: skip
    job = chat_job_from_body(body, metadata={"custom_id": "c1"})
    assert [m.role for m in job.messages] == ["system", "user"]
    assert job.messages[1].content == "hi there"
    assert job.tools is not None and job.tools[0].name == "lookup"
    assert job.tool_choice == ForcedTool(name="lookup")
    assert job.stop == ["END"] and job.max_tokens == 50 and job.temperature == 0.5
    assert job.metadata == {"team": "x", "custom_id": "c1"} and job.user_id == "u1"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("not an object", "body"),
        ({"messages": [{"role": "user", "content": "x"}]}, "body.model"),
        ({"model": "m", "messages": []}, "body.messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "body.messages.0.role"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
         "body.temperature"),
    ],
)  # fmt: skip
def test_a_bad_body_names_the_field(body: object, param: str) -> None:
    with pytest.raises(BodyError) as refused:
        chat_job_from_body(body)
    assert refused.value.param is not None and refused.value.param.startswith(param)


def test_job_extensions_in_the_body_reach_the_job() -> None:
    hello = [{"role": "user", "content": "hi"}]
    body = {"model": "gpt-x", "messages": hello, "user_id": "ann",
            "memory": {"user_id": "ann", "top_k": 2, "remember": True}}  # fmt: skip
    job = chat_job_from_body(body)
    assert job.user_id == "ann" and job.memory is not None
    assert (job.memory.user_id, job.memory.top_k, job.memory.remember) == ("ann", 2, True)
    with pytest.raises(BodyError) as both:
        chat_job_from_body({"model": "gpt-x", "messages": hello, "user": "a", "user_id": "b"})
    assert "user_id" in str(both.value)
    with pytest.raises(BodyError) as unknown:
        chat_job_from_body({"model": "gpt-x", "messages": hello, "memory": {"user": "ann"}})
    assert unknown.value.param is not None and unknown.value.param.startswith("body.memory")
