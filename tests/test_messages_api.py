"""Anthropic's API in: the official `anthropic` SDK, unmodified, against /v1/messages.

A real ingress and model-calls worker; the vendors are the fake servers of
tests/fakes/llm.py (claude-fake… speaks Anthropic's Messages API, gpt-fake…
OpenAI's chat completions), told by model name to call tools or report
prompt-cache tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Running, TenantKey
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique
from tests.test_gateway import usage_events

MILLION = Decimal(1_000_000)


@pytest.fixture
async def claude(running: Running, tenant: TenantKey) -> AsyncIterator[anthropic.AsyncAnthropic]:
    # max_retries=0: the SDK's own retries would hide our status codes.
    async with anthropic.AsyncAnthropic(
        base_url=running.url, api_key=tenant.key, max_retries=0, timeout=30
    ) as client:
        yield client


def _text(message: anthropic.types.Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


async def test_plain_message_answers_in_anthropics_shape(
    claude: anthropic.AsyncAnthropic, fake_llm: FakeLLMServer, running: Running
) -> None:
    words = unique("plain ")
    raw = await claude.messages.with_raw_response.create(
        model="claude-fake",
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": f"say {words}"}],
        stop_sequences=["END"],
        metadata={"user_id": "someone"},
        # The SDK no longer types the sampling parameters; the API takes them.
        extra_body={"temperature": 0.5, "top_k": 3},
    )
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert _text(message) == f"reply to: say {words}"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0 and message.usage.input_tokens > 0
    [call] = fake_llm.calls_for(f"say {words}")
    assert call.api == "anthropic"
    assert call.body["max_tokens"] == 64
    assert call.body["system"] == "be brief"
    assert call.body["stop_sequences"] == ["END"]
    assert (call.body["temperature"], call.body["top_k"]) == (0.5, 3)
    [usage] = await usage_events(running, raw.headers["x-ayush-job-id"])
    assert usage["input_tokens"] == message.usage.input_tokens
    assert usage["user_id"] == "someone"


async def test_a_bearer_token_authenticates_as_well_as_x_api_key(
    running: Running, tenant: TenantKey
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=running.url, auth_token=tenant.key, max_retries=0, timeout=30
    ) as client:
        message = await client.messages.create(
            model="claude-fake",
            max_tokens=16,
            messages=[{"role": "user", "content": "bearer"}],
            extra_headers={"anthropic-version": "2023-06-01"},
        )
    assert _text(message) == "reply to: bearer"


async def test_streaming_gives_text_and_the_final_message(
    claude: anthropic.AsyncAnthropic,
) -> None:
    words = unique("streamed ")
    async with claude.messages.stream(
        model="claude-fake@pace=30", max_tokens=64, messages=[{"role": "user", "content": words}]
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 1  # text arrives as the model writes it
    assert "".join(pieces) == f"reply to: {words}"
    assert _text(final) == f"reply to: {words}"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(f"reply to: {words}".split())


async def test_streamed_events_come_in_anthropics_order(
    running: Running, tenant: TenantKey
) -> None:
    body = {
        "model": "claude-fake",
        "max_tokens": 32,
        "stream": True,
        "messages": [{"role": "user", "content": "order"}],
    }
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        response = await http.post("/v1/messages", json=body, headers={"x-api-key": tenant.key})
    assert response.status_code == 200
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_goes_out_and_tool_result_comes_back(
    claude: anthropic.AsyncAnthropic, fake_llm: FakeLLMServer, stream: bool
) -> None:
    question = unique("weather in ")
    tools = [
        {
            "name": "lookup",
            "description": "look it up",
            "input_schema": {"type": "object", "properties": {"echo": {"type": "string"}}},
        }
    ]
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": question}]
    if stream:
        async with claude.messages.stream(
            model="claude-fake@tool", max_tokens=64, tools=tools, messages=messages
        ) as events:
            first = await events.get_final_message()
    else:
        first = await claude.messages.create(
            model="claude-fake@tool",
            max_tokens=64,
            tools=tools,
            tool_choice={"type": "tool", "name": "lookup"},
            messages=messages,
        )
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("lookup", {"echo": question})
    answer = await claude.messages.create(
        model="claude-fake@tool",
        max_tokens=64,
        tools=tools,
        messages=[
            *messages,
            {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn" and _text(answer).startswith("reply to:")
    last = [c for c in fake_llm.calls if c.api == "anthropic" and question in str(c.body)][-1]
    assert last.body["messages"][1]["content"][0]["type"] == "tool_use"
    assert last.body["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": use.id,
        "content": "sunny",
    }


async def test_count_tokens_estimates_the_input(claude: anthropic.AsyncAnthropic) -> None:
    short = await claude.messages.count_tokens(
        model="claude-fake", messages=[{"role": "user", "content": "hi"}]
    )
    longer = await claude.messages.count_tokens(
        model="claude-fake",
        system="you are a careful assistant",
        messages=[{"role": "user", "content": "hi " * 50}],
    )
    assert 0 < short.input_tokens < longer.input_tokens


async def test_a_message_for_an_openai_compatible_model_is_translated(
    claude: anthropic.AsyncAnthropic, fake_llm: FakeLLMServer
) -> None:
    words = unique("translated ")
    message = await claude.messages.create(
        model="gpt-fake",
        max_tokens=40,
        system=[{"type": "text", "text": "be kind"}],
        messages=[{"role": "user", "content": [{"type": "text", "text": words}]}],
        extra_body={"top_k": 5},  # Anthropic's alone: an OpenAI model goes without it
    )
    assert _text(message) == f"reply to: {words}"
    assert message.stop_reason == "end_turn"
    [call] = fake_llm.calls_for(words)
    assert call.api == "openai"
    assert call.body["messages"][0] == {"role": "system", "content": "be kind"}
    assert call.body.get("max_tokens", call.body.get("max_completion_tokens")) == 40
    assert "top_k" not in call.body


async def test_missing_max_tokens_is_400_naming_the_field(
    running: Running, tenant: TenantKey
) -> None:
    body = {"model": "claude-fake", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        response = await http.post("/v1/messages", json=body, headers={"x-api-key": tenant.key})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("max_tokens:")


async def test_a_bad_key_is_401_authentication_error(running: Running) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=running.url, api_key="ayush_not_a_key", max_retries=0
    ) as client:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await client.messages.create(
                model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
    assert refused.value.status_code == 401
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["error"]["type"] == "authentication_error"


async def test_an_unknown_model_is_404_not_found_error(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as refused:
        await claude.messages.create(
            model="nobody-knows-me", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["error"]["type"] == "not_found_error"


async def test_cache_control_reaches_claude_and_cached_tokens_are_priced(
    claude: anthropic.AsyncAnthropic, fake_llm: FakeLLMServer, running: Running
) -> None:
    words = unique("cached ")
    ephemeral = {"type": "ephemeral"}
    raw = await claude.messages.with_raw_response.create(
        model="claude-fake@cached=4@cache_write=6",
        max_tokens=64,
        system=[{"type": "text", "text": "a long stable preamble", "cache_control": ephemeral}],
        tools=[
            {
                "name": "lookup",
                "input_schema": {"type": "object", "properties": {}},
                "cache_control": ephemeral,
            }
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a document", "cache_control": ephemeral},
                    {"type": "text", "text": words},
                ],
            }
        ],
    )
    message = await raw.parse()
    [call] = [c for c in fake_llm.calls if words in str(c.body)]
    assert call.body["system"][0]["cache_control"] == ephemeral
    assert call.body["tools"][0]["cache_control"] == ephemeral
    assert call.body["messages"][0]["content"][0] == {
        "type": "text",
        "text": "a document",
        "cache_control": ephemeral,
    }
    assert "cache_control" not in call.body["messages"][0]["content"][1]
    usage = message.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (4, 6)
    # claude-fake*: $3/M input, $0.30/M cache reads, $3.75/M cache writes, $15/M output.
    expected = (
        usage.input_tokens * Decimal("3")
        + 4 * Decimal("0.30")
        + 6 * Decimal("3.75")
        + usage.output_tokens * Decimal("15")
    ) / MILLION
    assert Decimal(raw.headers["x-ayush-cost-usd"]) == expected
    [recorded] = await usage_events(running, raw.headers["x-ayush-job-id"])
    assert recorded["input_tokens"] == usage.input_tokens + 10
    assert recorded["extra"] == {"cached_input_tokens": 4, "cache_write_input_tokens": 6}
    assert Decimal(str(recorded["cost_usd"])) == expected


async def test_openai_cached_tokens_are_kept_in_usage_and_priced(
    running: Running, tenant: TenantKey
) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{running.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-fake@cached=3",
            messages=[{"role": "user", "content": unique("cache me ")}],
        )
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3
    # gpt-fake*: $1/M input, $0.50/M cached input, $2/M output.
    expected = (
        (usage.prompt_tokens - 3) * Decimal("1")
        + 3 * Decimal("0.50")
        + usage.completion_tokens * Decimal("2")
    ) / MILLION
    assert Decimal(raw.headers["x-ayush-cost-usd"]) == expected
