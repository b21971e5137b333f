"""Token counts for answers whose provider reported none: a real tokenizer, offline."""

from __future__ import annotations

import time

from infra.providers import tokens
from infra.providers.base import ChatRequest, Image, Message, Tool, ToolCall
from producers.ingress.admission import estimate_input_tokens
from schemas.jobs import ChatJob


def test_counts_match_the_cl100k_tokenizer() -> None:
    # "hello", " world", ",", " how", " are", " you", "?"
    assert tokens.count_text("hello world, how are you?") == 7
    assert tokens.count_text("") == 0


def test_special_token_text_from_a_user_is_plain_text() -> None:
    assert tokens.count_text("<|endoftext|>") == 7


def test_a_prompt_counts_each_message_framing_and_the_reply_priming() -> None:
    user = Message("user", "tokenize this sentence, please")  # 6 tokens, role 1
    assert tokens.count_prompt([user]) == 3 + (3 + 1 + 6)
    system = Message("system", "Be brief.")  # 3 tokens, role 1
    assert tokens.count_prompt([system, user]) == 3 + (3 + 1 + 3) + (3 + 1 + 6)


def test_tool_calls_count_their_name_and_arguments() -> None:
    call = ToolCall("call_1", "lookup", '{"q": "x"}')
    with_call = Message("assistant", "", (call,))
    assert tokens.count_prompt([with_call]) > tokens.count_prompt([Message("assistant", "")])
    assert tokens.count_tool_calls(with_call) == tokens.count_text("lookup") + tokens.count_text(
        '{"q": "x"}'
    )


def test_images_count_at_openais_price() -> None:
    text_only = Message("user", "look")
    with_images = Message(
        "user",
        "look",
        parts=("look", Image("https://e.x/a.png"), Image("https://e.x/b.png", "low")),
    )
    assert tokens.count_prompt([with_images]) == tokens.count_prompt([text_only]) + 765 + 85


def _job(**fields: object) -> ChatJob:
    return ChatJob.model_validate({"model": "gpt-fake", **fields})


MEGABYTE = "The quick brown fox jumps over the lazy dog. " * 22_000  # about 1 MB of prose


def test_text_parts_are_counted_as_what_is_sent() -> None:
    """A message with parts sends its parts, whatever its `content` says."""
    parts = [{"type": "text", "text": MEGABYTE}, {"type": "image", "url": "https://e.x/a.png"}]
    job = _job(messages=[{"role": "user", "content": "", "parts": parts}])
    # The real count of that text is about 230,000 tokens; the image is 765 more.
    assert estimate_input_tokens(job) > len(MEGABYTE) // 5 + 765


def test_tools_calls_results_and_schemas_are_counted() -> None:
    bare = estimate_input_tokens(_job(messages=[{"role": "user", "content": "hi"}]))
    big = "a field the model fills in " * 3500  # about 24,000 tokens each time
    schema = {"type": "object", "properties": {"x": {"type": "string", "description": big}}}
    cases: list[dict[str, object]] = [
        {"tools": [{"name": "lookup", "parameters": schema}]},
        {"tools": [{"name": "lookup", "description": big}]},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "name": "f", "arguments": big}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ]
        },
    ]
    for extra in cases:
        job = _job(**{"messages": [{"role": "user", "content": "hi"}], **extra})
        assert estimate_input_tokens(job) > bare + 20_000, extra


def test_embedding_inputs_are_counted_with_the_tokenizer() -> None:
    job = _job(kind="embedding", input=["hello world, how are you?", "hello"])
    assert estimate_input_tokens(job) == 7 + 1


def test_megabytes_of_one_repeated_character_are_estimated_quickly() -> None:
    """Byte-pair encoding of a long run is slow: the work is bounded, the estimate is not low."""
    run = "a" * 1_000_000
    job = _job(messages=[{"role": "user", "content": run} for _ in range(8)])
    started = time.perf_counter()
    estimate = estimate_input_tokens(job)
    assert time.perf_counter() - started < 1.0
    # cl100k_base counts a run of "a" at 8 characters a token: never less than that.
    assert estimate >= 8 * 1_000_000 // 8


def test_a_request_without_reported_usage_counts_its_tools_and_schema() -> None:
    user = Message("user", "hi")
    schema = {"type": "object", "properties": {"x": {"description": "y " * 5000}}}
    bare = tokens.count_request(ChatRequest("m", [user]))
    with_tool = tokens.count_request(
        ChatRequest("m", [user], tools=(Tool("lookup", "finds things", schema),))
    )
    with_format = tokens.count_request(
        ChatRequest("m", [user], response_format={"type": "json_schema", "json_schema": schema})
    )
    assert with_tool > bare + 5000 and with_format > bare + 5000
    text_in_parts = Message("user", "", parts=("tokenize this sentence, please",))
    assert tokens.count_prompt([text_in_parts]) == 3 + (3 + 1 + 6)


def test_a_response_turns_input_counts_before_it_runs() -> None:
    import uuid

    from schemas.responses_api import ResponseRequest, response_job

    text = "a sentence of several words " * 50
    body = ResponseRequest.model_validate(
        {"model": "gpt-fake", "input": text, "instructions": "be brief"}
    )
    job = response_job(body, uuid.uuid4(), 0, previous_response_id=None, conversation_id=None)
    assert job.messages == []  # the worker assembles them
    assert estimate_input_tokens(job) >= tokens.count_text(text) + tokens.count_text("be brief")
