"""The OpenAI-compatible gateway, driven by the official `openai` SDK end to end.

A real ingress and model-calls worker, real Kafka/Postgres/Redis; the model
vendors are the fake servers of tests/fakes/llm.py, told by model name to
fail, delay, rate-limit or call tools.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import httpx
import openai
import pytest

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.kafka.codec import decode_raw
from infra.local_stack import ServiceAddresses
from tests.conftest import Running, TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import early_in_a_minute, eventually, unique
from tests.kafka_tools import read_topic

ROUTING = """
[retry]
max_attempts = 3
backoff_initial_s = 0.05
backoff_max_s = 2

[aliases]
"fast" = "gpt-fake"

[models."gpt-fake"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [{{ provider = "openai", base_url = "{v1}", api_key = "sk-fake" }}]

[models."primary-down"]
max_attempts = 2
fallbacks = ["claude-fake"]
deployments = [{{ provider = "openai", model = "gpt-fake@always=500", base_url = "{v1}" }}]

[models."limited"]
deployments = [
  {{ provider = "openai", model = "gpt-fake@status=429@retry_after=1@fail=1", base_url = "{v1}" }},
]

[models."always-limited"]
max_attempts = 1
deployments = [
  {{ provider = "openai", model = "gpt-fake@always=429@retry_after=7", base_url = "{v1}" }},
]

[models."slow"]
max_attempts = 1
deployments = [
  {{ provider = "openai", model = "gpt-fake@delay=3000", base_url = "{v1}", timeout_s = 0.3 }},
]

[models."slow-then-fast"]
max_attempts = 1
fallbacks = ["gpt-fake"]
deployments = [
  {{ provider = "openai", model = "gpt-fake@delay=3000", base_url = "{v1}", timeout_s = 0.3 }},
]

[models."split"]
deployments = [
  {{ provider = "openai", model = "gpt-fake", base_url = "{v1}", api_key = "sk-h", weight = 3 }},
  {{ provider = "openai", model = "gpt-fake", base_url = "{v1}", api_key = "sk-l", weight = 1 }},
]

[models."one-at-a-time"]
deployments = [
  {{ provider = "openai", model = "gpt-fake@delay=400", base_url = "{v1}", max_concurrency = 1 }},
]

[models."no-usage"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [{{ provider = "openai", model = "gpt-fake@nousage", base_url = "{v1}" }}]

[models."claude-fake"]
deployments = [{{ provider = "anthropic", base_url = "{url}", api_key = "sk-ant-fake" }}]

[models."emb-fake"]
price = {{ input = "0.10", output = "0" }}
deployments = [{{ provider = "openai", model = "text-embedding-fake", base_url = "{v1}" }}]
"""


@pytest.fixture(scope="module")
def gateway(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("gateway")
    routing = folder / "routing.toml"
    routing.write_text(ROUTING.format(v1=fake_llm.openai_base_url, url=fake_llm.url))
    platform, settings = new_platform(services, fake_llm, folder / "logs")
    platform.env["AYUSH_ROUTING_FILE"] = str(routing)
    with platform.serving("model-calls"):
        yield Running(platform, settings)


@pytest.fixture
async def oai(gateway: Running, db: Database) -> AsyncIterator[openai.AsyncOpenAI]:
    tenant = await make_tenant(db)
    # max_retries=0: the SDK's own retries would hide our status codes.
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    ) as client:
        yield client


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def usage_events(gateway: Running, job_id: str) -> list[dict[str, object]]:
    async def probe() -> list[dict[str, object]] | None:
        records = await read_topic(gateway.settings, "usage.recorded")
        mine = [decode_raw(r.value) for r in records]
        found = [e.payload for e in mine if str(e.correlation_id) == job_id]
        return found or None

    return await eventually(probe, 20, f"usage of job {job_id}")


async def test_chat_completion_is_a_job_with_usage_and_cost(
    oai: openai.AsyncOpenAI, gateway: Running
) -> None:
    words = unique("hello ")
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=user(f"say {words}"),  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == f"reply to: say {words}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 5)
    # priced by the routing file: 3 x $5/M in + 5 x $7/M out
    assert Decimal(raw.headers["x-ayush-cost-usd"]) == Decimal("0.00005")

    job_id = raw.headers["x-ayush-job-id"]
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        job = (await http.get(f"/v1/jobs/{job_id}", headers=_auth(oai))).json()
    assert job["status"] == "succeeded" and job["provider"] == "openai"
    assert job["result"] == f"reply to: say {words}"
    [usage] = await usage_events(gateway, job_id)
    assert Decimal(str(usage["cost_usd"])) == Decimal("0.00005")
    assert usage["cached"] is False


async def test_usage_a_stream_does_not_report_is_counted_with_the_tokenizer(
    oai: openai.AsyncOpenAI, gateway: Running
) -> None:
    raw = await oai.chat.completions.with_raw_response.create(
        model="no-usage",
        messages=user("tokenize this sentence, please"),  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "reply to: tokenize this sentence, please"
    assert completion.usage is not None
    # cl100k_base: 3 + (3 + "user" 1 + 6) for the prompt; "reply to: …" is 8 tokens.
    # (Four characters a token would have said 8 and 10.)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (13, 8)
    [usage] = await usage_events(gateway, raw.headers["x-ayush-job-id"])
    assert (usage["input_tokens"], usage["output_tokens"]) == (13, 8)
    assert Decimal(str(usage["cost_usd"])) == Decimal("0.000121")  # 13 x $5/M + 8 x $7/M


async def test_each_call_counts_once_against_the_keys_requests_per_minute(
    gateway: Running, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    key, plaintext = await create_api_key(db, uuid.UUID(str(admin.tenant_id)))
    body = {"model": "gpt-fake", "messages": user("count me")}
    auth = {"Authorization": f"Bearer {plaintext}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        put = await http.put(
            f"/v1/ratelimits/keys/{key.id}", json={"rpm": 2}, headers=admin.headers
        )
        assert put.status_code == 200, put.text
        await eventually(early_in_a_minute, 20, "the start of a minute")
        calls = [await http.post("/v1/chat/completions", json=body, headers=auth) for _ in "abc"]
    assert [c.status_code for c in calls] == [200, 200, 429]
    assert [c.headers["x-ratelimit-remaining"] for c in calls[:2]] == ["1", "0"]
    refused = calls[2].json()["error"]
    assert (refused["type"], refused["code"]) == ("rate_limit_error", "rate_limited")
    assert int(calls[2].headers["retry-after"]) >= 1


async def test_alias_routes_to_its_model(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="fast", messages=user("aliased"))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "reply to: aliased"
    assert completion.model == "gpt-fake"


async def test_streaming_chunks_arrive_in_order_and_end_with_done(
    oai: openai.AsyncOpenAI, gateway: Running
) -> None:
    text = "one two three four five six"
    stream = await oai.chat.completions.create(
        model="gpt-fake@pace=30",
        messages=user(text),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == f"reply to: {text}"
    # one chunk per upstream delta, in order (deltas closer together than a
    # Redis round trip would be coalesced; these are 30 ms apart)
    assert pieces == ["reply", " to:", " one", " two", " three", " four", " five", " six"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8

    # On the wire: OpenAI's SSE framing, closed by [DONE].
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        body = {"model": "gpt-fake", "messages": user("wire check"), "stream": True}
        response = await http.post("/v1/chat/completions", json=body, headers=_auth(oai))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-ayush-job-id"]
    frames = [f for f in response.text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"


async def test_fallback_to_another_vendor_on_5xx(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("fallback ")
    raw = await oai.chat.completions.with_raw_response.create(
        model="primary-down",
        messages=user(text),  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == f"reply to: {text}"
    assert completion.model == "claude-fake"
    calls = fake_llm.calls_for(text)
    assert [c.api for c in calls] == ["openai", "openai", "anthropic"]


async def test_retry_waits_for_retry_after(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("patience ")
    completion = await oai.chat.completions.create(model="limited", messages=user(text))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == f"reply to: {text}"
    first, second = fake_llm.calls_for(text)
    assert second.at - first.at >= 1.0  # Retry-After: 1, not our 50 ms backoff


async def test_rate_limit_reaches_the_client_as_429_with_retry_after(
    oai: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model="always-limited", messages=user(unique()))  # type: ignore[arg-type]
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["x-ayush-job-id"]
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "rate_limit_error"


async def test_timeout_is_504_or_falls_back(oai: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model="slow", messages=user(unique()))  # type: ignore[arg-type]
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 2.5  # the deployment's 0.3 s budget, not the delay

    text = unique("in time ")
    completion = await oai.chat.completions.create(model="slow-then-fast", messages=user(text))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == f"reply to: {text}"


async def test_cache_hit_costs_nothing(
    oai: openai.AsyncOpenAI, gateway: Running, fake_llm: FakeLLMServer
) -> None:
    text = unique("cache me ")
    cache = {"X-Ayush-Cache": "true"}
    first = await oai.chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=user(text),
        extra_headers=cache,  # type: ignore[arg-type]
    )
    second = await oai.chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=user(text),
        extra_headers=cache,  # type: ignore[arg-type]
    )
    assert first.headers["x-ayush-cache"] == "miss" and second.headers["x-ayush-cache"] == "hit"
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
    assert Decimal(first.headers["x-ayush-cost-usd"]) > 0
    assert Decimal(second.headers["x-ayush-cost-usd"]) == 0
    assert len(fake_llm.calls_for(text)) == 1
    [usage] = await usage_events(gateway, second.headers["x-ayush-job-id"])
    assert usage["cached"] is True and Decimal(str(usage["cost_usd"])) == 0

    # a streamed request is served from the same cache
    stream = await oai.chat.completions.create(
        model="gpt-fake",
        messages=user(text),
        stream=True,
        extra_headers=cache,  # type: ignore[arg-type]
    )
    text_out = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text_out == f"reply to: {text}"
    assert len(fake_llm.calls_for(text)) == 1


async def test_claude_through_the_openai_format_translates_both_ways(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    question = unique("weather in ")
    tools = [{"type": "function", "function": {
        "name": "lookup", "description": "Look a thing up",
        "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
    }}]  # fmt: skip
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": question},
    ]
    completion = await oai.chat.completions.create(
        model="claude-fake@tool", messages=messages, tools=tools,  # type: ignore[arg-type]
        max_tokens=50, temperature=0.3, stop=["END"],
    )  # fmt: skip
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"echo": question}  # type: ignore[union-attr]

    sent = fake_llm.calls_for(question)[-1].body
    assert sent["system"] == "be brief"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.3
    assert sent["stop_sequences"] == ["END"]
    assert sent["tools"][0]["name"] == "lookup"
    assert sent["tools"][0]["input_schema"]["properties"] == {"echo": {"type": "string"}}

    # the tool's answer goes back as a tool_result block; the model answers in text
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = await oai.chat.completions.create(
        model="claude-fake@tool",
        messages=follow_up,
        tools=tools,  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "stop"
    last = fake_llm.calls[-1].body["messages"]
    assert last[-2]["content"][0]["type"] == "tool_use"
    assert last[-1]["content"][0] == {
        "type": "tool_result", "tool_use_id": call.id, "content": "sunny",
    }  # fmt: skip


async def test_sampling_and_json_schema_reach_an_openai_deployment(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("structured ")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    await oai.chat.completions.create(
        model="gpt-fake",
        messages=user(text),  # type: ignore[arg-type]
        top_p=0.4, seed=7, presence_penalty=0.5, frequency_penalty=-0.5,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": schema, "strict": True},
        },
    )  # fmt: skip
    [call] = fake_llm.calls_for(text)
    sent = {k: call.body.get(k) for k in ("top_p", "seed", "presence_penalty", "frequency_penalty")}
    assert sent == {"top_p": 0.4, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5}
    assert call.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }


async def test_claude_is_asked_for_json_in_words_and_gets_top_p(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("json please ")
    await oai.chat.completions.create(
        model="claude-fake",
        messages=user(text),  # type: ignore[arg-type]
        top_p=0.3,
        seed=7,  # OpenAI's only: not sent to Anthropic
        response_format={"type": "json_object"},
    )
    [call] = fake_llm.calls_for(text)
    assert call.api == "anthropic" and "one JSON object and nothing else" in call.system
    assert call.body.get("top_p") == 0.3 and "seed" not in call.body


async def test_a_prompt_over_a_megabyte_goes_through(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    # Long-context models take millions of characters; Kafka's default record
    # limit is one megabyte.
    document = " lorem ipsum" * 80_000  # 960 kB a message, under the per-message limit
    text = unique("long ") + document
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=[
            {"role": "system", "content": "Summarize." + document},
            {"role": "user", "content": text},
        ],
    )
    assert raw.parse().choices[0].message.content == f"reply to: {text}"
    assert len(fake_llm.calls_for(text)) == 1


PNG = (  # one transparent pixel
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def _picture_question(text: str, url: str, detail: str | None = None) -> list[dict[str, object]]:
    image: dict[str, str] = {"url": url, **({"detail": detail} if detail else {})}
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": image}]
    return [{"role": "user", "content": parts}]


async def test_images_reach_an_openai_deployment_in_order(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("what is in this picture? ")
    url = "https://example.com/cat.png"
    await oai.chat.completions.create(
        model="gpt-fake",
        messages=_picture_question(text, url, "low"),  # type: ignore[arg-type]
    )
    [call] = fake_llm.calls_for(text)
    assert call.body["messages"][-1]["content"] == [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]


async def test_claude_gets_an_inline_image_as_a_base64_block(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("describe ")
    await oai.chat.completions.create(
        model="claude-fake",
        messages=_picture_question(text, PNG),  # type: ignore[arg-type]
    )
    [call] = fake_llm.calls_for(text)
    assert call.body["messages"][-1]["content"] == [
        {"type": "text", "text": text},
        {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": PNG.split(",", 1)[1],
        }},
    ]  # fmt: skip


async def test_unsupported_parts_and_images_are_refused_naming_the_message(
    oai: openai.AsyncOpenAI,
) -> None:
    audio = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    with pytest.raises(openai.BadRequestError) as refused:
        await oai.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "hello"}, {"role": "user", "content": audio}],  # type: ignore[list-item,misc]
        )
    assert refused.value.param == "messages.1" and "input_audio" in refused.value.message
    with pytest.raises(openai.BadRequestError) as bad_url:
        await oai.chat.completions.create(
            model="gpt-fake",
            messages=_picture_question("look", "ftp://example.com/cat.png"),  # type: ignore[arg-type]
        )
    assert bad_url.value.param == "messages.0"
    assert "http(s) URL or a data:image" in bad_url.value.message


async def test_openai_tool_calls_stream_through(oai: openai.AsyncOpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "find", "parameters": {}}}]
    stream = await oai.chat.completions.create(
        model="gpt-fake@tool",
        messages=user("find it"),
        tools=tools,
        stream=True,  # type: ignore[arg-type]
    )
    calls = [
        d for c in [c async for c in stream] if c.choices
        for d in c.choices[0].delta.tool_calls or ()
    ]  # fmt: skip
    assert calls[0].function is not None and calls[0].function.name == "find"
    assert json.loads(calls[0].function.arguments or "") == {"echo": "find it"}


async def test_weighted_deployments_share_the_load(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    text = unique("spread ")
    for _ in range(24):
        await oai.chat.completions.create(model="split", messages=user(text))  # type: ignore[arg-type]
    keys = [c.headers.get("Authorization") for c in fake_llm.calls_for(text)]
    heavy, light = keys.count("Bearer sk-h"), keys.count("Bearer sk-l")
    assert heavy + light == 24 and heavy > light > 0


async def test_concurrency_limit_queues_calls(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    import asyncio

    text = unique("one by one ")
    await asyncio.gather(
        *[oai.chat.completions.create(model="one-at-a-time", messages=user(text)) for _ in range(2)]  # type: ignore[arg-type]
    )
    first, second = fake_llm.calls_for(text)
    assert second.at - first.at >= 0.35  # the second waited for the first's 400 ms


async def test_embeddings(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.embeddings.create(model="emb-fake", input=["a b", "c"])
    assert [len(d.embedding) for d in reply.data] == [8, 8]
    assert reply.usage.prompt_tokens == 3
    local = await oai.embeddings.create(model="local-hash", input="plain text")
    assert len(local.data[0].embedding) == 384


async def test_models_list(oai: openai.AsyncOpenAI) -> None:
    names = [m.id async for m in oai.models.list()]
    assert {"gpt-fake", "fast", "claude-fake", "emb-fake"} <= set(names)


async def test_models_list_names_every_model_a_request_may_name(oai: openai.AsyncOpenAI) -> None:
    """With a routing file, the family defaults still route: they are listed too."""
    listed = [m.id async for m in oai.models.list()]
    assert {"gpt-fake", "fast", "split", "emb-fake"} <= set(listed)
    defaults = {"gpt-4o", "o3", "claude-sonnet-4-5", "text-embedding-3-small", "local-echo"}
    assert defaults | {"local-hash"} <= set(listed)
    for name in listed:  # GET /v1/models/{id} agrees with the list
        assert (await oai.models.retrieve(name)).id == name
    reply = await oai.chat.completions.create(model="local-echo", messages=user("listed"))  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "listed"
    unpriced = f"gpt-unpriced-{uuid.uuid4().hex[:8]}"
    assert unpriced not in listed
    with pytest.raises(openai.NotFoundError):
        await oai.models.retrieve(unpriced)


async def test_errors_come_in_openai_shape(oai: openai.AsyncOpenAI, gateway: Running) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.chat.completions.create(model="no-such-model", messages=user("x"))  # type: ignore[arg-type]
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "model_not_found"

    with pytest.raises(openai.BadRequestError) as bad:
        await oai.chat.completions.create(model="gpt-fake", messages=user("x"), temperature=5)  # type: ignore[arg-type]
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "temperature"

    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(model="gpt-fake@always=400", messages=user(unique()))  # type: ignore[arg-type]

    with pytest.raises(openai.InternalServerError) as upstream:
        await oai.chat.completions.create(model="gpt-fake@always=500", messages=user(unique()))  # type: ignore[arg-type]
    assert upstream.value.status_code == 502

    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key="ayk_wrong", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()


async def test_tenant_setting_turns_the_cache_on(
    gateway: Running, db: Database, fake_llm: FakeLLMServer
) -> None:
    from sqlalchemy import update

    from infra.db.models import Tenant

    tenant: TenantKey = await make_tenant(db)
    async with db.transaction() as session:
        await session.execute(
            update(Tenant).where(Tenant.id == tenant.tenant_id).values(
                settings={"response_cache": True}
            )
        )  # fmt: skip
    text = unique("tenant cache ")
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=tenant.key, max_retries=0
    ) as client:
        for expected in ("miss", "hit"):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-fake",
                messages=user(text),  # type: ignore[arg-type]
            )
            assert raw.headers["x-ayush-cache"] == expected
    assert len(fake_llm.calls_for(text)) == 1


def _auth(client: openai.AsyncOpenAI) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.api_key}"}


async def test_a_spent_budget_refuses_gateway_calls_with_402(
    gateway: Running, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        put = await http.put(
            "/v1/budgets/tenant", json={"monthly_usd": "0.000001"}, headers=admin.headers
        )
        assert put.status_code == 200, put.text
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=admin.key, max_retries=0, timeout=30
    ) as client:
        # gpt-fake costs $5/$7 per 1M tokens: even one token out is over a millionth of a dollar.
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(
                model="gpt-fake",
                messages=user("too dear"),  # type: ignore[arg-type]
                max_tokens=1,
            )
        with pytest.raises(openai.APIStatusError) as refused_embedding:
            await client.embeddings.create(model="emb-fake", input=["a " * 100])
    for caught in (refused.value, refused_embedding.value):
        assert caught.status_code == 402
        error = caught.response.json()["error"]
        assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
        assert error["budget"]["scope"] == "tenant" and "resets" in error["message"]


async def test_tool_schemas_count_against_the_budget(gateway: Running, db: Database) -> None:
    """What a tool definition sends upstream is admitted like the messages are."""
    admin = await make_tenant(db, admin=True)
    # A megabyte of schema: about 250,000 tokens, over $1 at gpt-fake's $5 per 1M in.
    schema = {"type": "object", "properties": {"x": {"description": "fill me in " * 90_000}}}
    body = {
        "model": "gpt-fake",
        "max_tokens": 1,
        "messages": user("hi"),
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": schema}}],
    }
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        put = await http.put(
            "/v1/budgets/tenant", json={"monthly_usd": "0.05"}, headers=admin.headers
        )
        assert put.status_code == 200, put.text
        response = await http.post("/v1/chat/completions", json=body, headers=admin.headers)
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "budget_exceeded"
