"""A deployment with `api = "responses"`: the gateway calls the upstream's Responses API.

A real ingress and model-calls worker; the upstream is the fake server's
POST /v1/responses (tests/fakes/llm_responses.py), which records what it got.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from tests.conftest import Running, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique

ROUTING = """
[retry]
max_attempts = 3
backoff_initial_s = 0.05
backoff_max_s = 2

[models."resp"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [{{ provider = "openai", api = "responses", base_url = "{v1}", api_key = "sk-r" }}]

[models."resp-tool"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [
  {{ provider = "openai", api = "responses", model = "gpt-fake@tool", base_url = "{v1}" }},
]

[models."resp-cached"]
price = {{ input = "5.00", output = "7.00", cached_input = "1.00" }}
deployments = [
  {{ provider = "openai", api = "responses", model = "gpt-fake@cached=2", base_url = "{v1}" }},
]

[models."resp-limited"]
price = {{ input = "5.00", output = "7.00" }}
[[models."resp-limited".deployments]]
provider = "openai"
api = "responses"
model = "gpt-fake@status=429@fail=1"
base_url = "{v1}"

[models."resp-refused"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [
  {{ provider = "openai", api = "responses", model = "gpt-fake@always=400", base_url = "{v1}" }},
]
"""


@pytest.fixture(scope="module")
def gateway(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("responses-upstream")
    routing = folder / "routing.toml"
    routing.write_text(ROUTING.format(v1=fake_llm.openai_base_url))
    platform, settings = new_platform(services, fake_llm, folder / "logs")
    platform.env["AYUSH_ROUTING_FILE"] = str(routing)
    with platform.serving("model-calls"):
        yield Running(platform, settings)


@pytest.fixture
async def oai(gateway: Running, db: Database) -> AsyncIterator[openai.AsyncOpenAI]:
    tenant = await make_tenant(db)
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    ) as client:
        yield client


async def test_a_responses_deployment_answers_a_chat_completion(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("hello ")
    raw = await oai.chat.completions.with_raw_response.create(
        model="resp",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
        max_tokens=50,
        temperature=0.5,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == f"reply to: {text}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    # the upstream's count: "be brief" + the two words of the message; "reply to: hello-…"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 4)
    assert Decimal(raw.headers["x-ayush-cost-usd"]) == Decimal("0.000048")  # 4x5 + 4x7 per M

    [call] = fake_llm.calls_for(text)
    assert call.api == "responses"
    assert call.headers["Authorization"] == "Bearer sk-r"
    body = call.body
    assert (body["stream"], body["store"]) == (True, False)
    assert body["instructions"] == "be brief"
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    ]
    assert (body["max_output_tokens"], body["temperature"]) == (50, 0.5)
    assert "messages" not in body and "max_tokens" not in body


async def test_a_responses_deployment_streams_its_deltas_in_order(
    oai: openai.AsyncOpenAI,
) -> None:
    stream = await oai.chat.completions.create(
        model="resp",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "reply to: one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


async def test_a_responses_deployment_calls_tools_and_gets_their_results(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("find ")
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "find",
                "description": "finds",
                "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
            },
        }
    ]
    first = await oai.chat.completions.create(
        model="resp-tool",
        messages=[{"role": "user", "content": text}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "find"}},
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [tool_call] = choice.message.tool_calls
    assert tool_call.id == "call_fake"  # the upstream's call_id
    called: Any = tool_call.model_dump()
    assert called["function"]["name"] == "find"
    assert json.loads(called["function"]["arguments"]) == {"echo": text}

    conversation: Any = [
        {"role": "user", "content": text},
        {"role": "assistant", "content": None, "tool_calls": [called]},
        {"role": "tool", "tool_call_id": "call_fake", "content": "found it"},
    ]
    second = await oai.chat.completions.create(
        model="resp-tool", messages=conversation, tools=tools
    )
    assert second.choices[0].message.content == f"reply to: {text}"
    sent = [c.body for c in fake_llm.calls_for(text)]
    assert sent[0]["tools"] == [
        {
            "type": "function",
            "name": "find",
            "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
            "strict": False,
            "description": "finds",
        }
    ]
    assert sent[0]["tool_choice"] == {"type": "function", "name": "find"}
    assert sent[1]["input"][1:] == [
        {"type": "function_call", "call_id": "call_fake", "name": "find",
         "arguments": json.dumps({"echo": text})},
        {"type": "function_call_output", "call_id": "call_fake", "output": "found it"},
    ]  # fmt: skip


async def test_a_responses_deployment_reports_cached_input_tokens(
    oai: openai.AsyncOpenAI,
) -> None:
    raw = await oai.chat.completions.with_raw_response.create(
        model="resp-cached", messages=[{"role": "user", "content": "a b c d"}]
    )
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 4
    # 2 of them read from the upstream's cache: 2 x $5/M + 2 cached x $1/M + 6 x $7/M
    assert Decimal(raw.headers["x-ayush-cost-usd"]) == Decimal("0.000054")


async def test_a_responses_deployment_is_retried_after_429(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("again ")
    completion = await oai.chat.completions.create(
        model="resp-limited", messages=[{"role": "user", "content": text}]
    )
    assert completion.choices[0].message.content == f"reply to: {text}"
    assert [c.api for c in fake_llm.calls_for(text)] == ["responses", "responses"]


async def test_a_responses_deployment_refusing_with_400_fails_once(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer, gateway: Running
) -> None:
    text = unique("bad ")
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model="resp-refused", messages=[{"role": "user", "content": text}]
        )
    assert "fake failure 400" in str(caught.value)
    assert len(fake_llm.calls_for(text)) == 1  # a 400 is not retried
    job_id = caught.value.response.headers["x-ayush-job-id"]
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        job = await http.get(
            f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {oai.api_key}"}
        )
    assert job.json()["status"] == "failed"


async def test_an_answer_cut_by_max_tokens_finishes_with_length(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="resp", messages=[{"role": "user", "content": "a long answer please"}], max_tokens=2
    )
    assert completion.choices[0].message.content == "reply to:"
    assert completion.choices[0].finish_reason == "length"
