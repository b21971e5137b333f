"""AWS Bedrock passes the provider contract the OpenAI and Anthropic providers pass.

aioboto3 (botocore: SigV4, the event-stream decoder, its error parsing) drives
the fake Bedrock runtime of tests/fakes/bedrock.py: streaming deltas, tool
calls both ways, images, JSON schema output, sampling and stop on the wire,
4xx permanent and 429/5xx transient with Retry-After, usage with cached
tokens, embeddings; then through the gateway and a real worker: a job's usage
and cost, retries and fallback to another vendor.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from infra.db.engine import Database
from infra.embeddings.bedrock import BedrockEmbedder
from infra.errors import PermanentError, TransientError
from infra.local_stack import ServiceAddresses
from infra.pricing import PriceTable
from infra.providers.base import ChatRequest, Completion, Image, Message, Tool, ToolCall
from infra.providers.bedrock import BedrockProvider
from infra.routing.catalog import ModelCatalog
from infra.routing.config import load_routing
from infra.routing.gateway import Gateway
from tests.conftest import TEST_PRICES, Running, make_tenant, new_platform
from tests.fakes.bedrock import FakeBedrock, encode_event, fake_vector
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique
from tests.test_gateway import usage_events
from tests.test_jobs_http import submit, wait_finished

CLAUDE = "anthropic.claude-fake"
LLAMA = "meta.llama-fake"
LOOKUP = Tool("lookup", "Look a thing up", {"type": "object", "properties": {"echo": {}}})
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-pixel").decode()


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDBEDROCKTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bedrock-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


async def run(
    fake: FakeBedrock, request: ChatRequest, **options: object
) -> tuple[Completion, list[str]]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    provider = BedrockProvider(base_url=fake.url, **options)  # type: ignore[arg-type]
    try:
        return await provider.stream_chat(request, on_delta), deltas
    finally:
        await provider.close()


def user(text: str) -> list[Message]:
    return [Message("user", text)]


# the wire --------------------------------------------------------------------------
def test_event_stream_frames_round_trip_through_botocores_decoder() -> None:
    headers = {":event-type": "contentBlockDelta", ":message-type": "event"}
    payload = json.dumps({"contentBlockIndex": 0, "delta": {"text": "héllo"}}).encode()
    frames = encode_event(headers, payload) + encode_event({":event-type": "x"}, b"{}")
    buffer = EventStreamBuffer()
    buffer.add_data(frames[:7])  # a frame split across reads
    assert list(buffer) == []
    buffer.add_data(frames[7:])
    first, second = list(buffer)
    assert first.headers == headers and first.payload == payload
    assert second.headers == {":event-type": "x"} and second.payload == b"{}"

    corrupt = bytearray(encode_event(headers, payload))
    corrupt[-5] ^= 0xFF  # a payload byte: the message CRC no longer matches
    broken = EventStreamBuffer()
    broken.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(broken)


async def test_text_streams_as_deltas_with_system_turns_and_a_sigv4_signature(
    fake_bedrock: FakeBedrock,
) -> None:
    text = unique("stream ")
    request = ChatRequest(
        CLAUDE,
        [
            Message("system", "be brief"),
            Message("user", "first"),
            Message("assistant", "ok"),
            Message("user", text),
        ],
    )
    completion, deltas = await run(fake_bedrock, request)
    assert completion.text == f"reply to: {text}" and completion.finish_reason == "stop"
    assert len(deltas) == 4 and "".join(deltas) == completion.text
    [call] = fake_bedrock.calls_for(text)
    assert call.api == "converse-stream" and call.model == CLAUDE
    assert call.body["system"] == [{"text": "be brief"}]
    assert [m["role"] for m in call.body["messages"]] == ["user", "assistant", "user"]
    authorization = call.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDBEDROCKTEST/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    # usage: the fake counts 6 words in and 4 out
    assert (completion.input_tokens, completion.output_tokens) == (6, 4)
    assert not completion.usage_estimated


async def test_cached_input_tokens_are_counted_in_the_input(fake_bedrock: FakeBedrock) -> None:
    completion, _ = await run(fake_bedrock, ChatRequest(f"{CLAUDE}@cached=3", user("a b")))
    # Converse's inputTokens leaves the cache reads out; ours include them.
    assert (completion.input_tokens, completion.cached_input_tokens) == (2 + 3, 3)


async def test_sampling_stop_and_max_tokens_reach_inference_config(
    fake_bedrock: FakeBedrock,
) -> None:
    text = unique("sample ")
    request = ChatRequest(
        CLAUDE, user(text), temperature=0.3, top_p=0.9, max_tokens=77, stop=["END", "STOP"]
    )
    await run(fake_bedrock, request)
    [call] = fake_bedrock.calls_for(text)
    assert call.body["inferenceConfig"] == {
        "maxTokens": 77,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END", "STOP"],
    }


async def test_json_schema_is_asked_for_in_the_system_prompt(fake_bedrock: FakeBedrock) -> None:
    text = unique("json ")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    await run(fake_bedrock, ChatRequest(CLAUDE, user(text), response_format=response_format))
    [call] = fake_bedrock.calls_for(text)
    [system] = call.body["system"]
    assert json.dumps(schema, separators=(",", ":")) in system["text"]
    assert "toolConfig" not in call.body  # no tool invented for it


async def test_tool_calls_stream_out_and_tool_results_go_back(fake_bedrock: FakeBedrock) -> None:
    text = unique("weather ")
    completion, deltas = await run(
        fake_bedrock, ChatRequest(f"{CLAUDE}@tool", user(text), tools=[LOOKUP], tool_choice="auto")
    )
    assert completion.finish_reason == "tool_calls" and deltas == []
    [call] = completion.tool_calls
    assert call.name == "lookup" and json.loads(call.arguments) == {"echo": text}
    [first] = fake_bedrock.calls_for(text)
    assert first.body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "lookup",
                    "description": "Look a thing up",
                    "inputSchema": {"json": LOOKUP.parameters},
                }
            }
        ],
        "toolChoice": {"auto": {}},
    }

    history = [
        Message("user", text),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", "sunny", tool_call_id=call.id),
    ]
    answer, _ = await run(fake_bedrock, ChatRequest(f"{CLAUDE}@tool", history, tools=[LOOKUP]))
    assert answer.text == f"reply to: {text}" and answer.tool_calls == []
    second = fake_bedrock.calls_for(text)[-1]
    assistant, result = second.body["messages"][1:]
    assert assistant["content"] == [
        {"toolUse": {"toolUseId": call.id, "name": "lookup", "input": {"echo": text}}}
    ]
    assert result == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": call.id, "content": [{"text": "sunny"}]}}],
    }


async def test_a_forced_tool_is_tool_choice_tool(fake_bedrock: FakeBedrock) -> None:
    text = unique("forced ")
    other = Tool("other", None, {})
    completion, _ = await run(
        fake_bedrock,
        ChatRequest(f"{CLAUDE}@tool", user(text), tools=[LOOKUP, other], forced_tool="other"),
    )
    assert [c.name for c in completion.tool_calls] == ["other"]
    [call] = fake_bedrock.calls_for(text)
    assert call.body["toolConfig"]["toolChoice"] == {"tool": {"name": "other"}}
    assert call.body["toolConfig"]["tools"][1]["toolSpec"]["inputSchema"] == {
        "json": {"type": "object", "properties": {}}
    }


async def test_models_without_streamed_tools_call_them_on_converse(
    fake_bedrock: FakeBedrock,
) -> None:
    text = unique("llama ")
    completion, _ = await run(
        fake_bedrock, ChatRequest(f"{LLAMA}@tool", user(text), tools=[LOOKUP])
    )
    assert completion.tool_calls == [ToolCall("tooluse_fake", "lookup", json.dumps({"echo": text}))]
    assert completion.finish_reason == "tool_calls"
    plain = unique("llama plain ")
    answer, deltas = await run(fake_bedrock, ChatRequest(LLAMA, user(plain)))
    assert answer.text == f"reply to: {plain}" and len(deltas) == 5
    assert [c.api for c in fake_bedrock.calls_for(text) + fake_bedrock.calls_for(plain)] == [
        "converse",
        "converse-stream",
    ]
    # Converse (unstreamed) reports its text as one delta
    history = [Message("user", text)]
    said, deltas = await run(fake_bedrock, ChatRequest(LLAMA, history, tools=[LOOKUP]))
    assert deltas == [said.text] and said.input_tokens > 0


async def test_an_inline_image_is_sent_as_bytes_in_order(fake_bedrock: FakeBedrock) -> None:
    text = unique("look ")
    parts: list[str | Image] = ["before", Image(f"data:image/png;base64,{PIXEL}"), text]
    await run(fake_bedrock, ChatRequest(CLAUDE, [Message("user", text, parts=parts)]))
    [call] = fake_bedrock.calls_for(f"before {text}")
    # botocore puts the bytes on the wire as base64, as Bedrock's JSON protocol wants
    assert call.body["messages"][0]["content"] == [
        {"text": "before"},
        {"image": {"format": "png", "source": {"bytes": PIXEL}}},
        {"text": text},
    ]


async def test_an_image_by_url_is_refused_before_any_call(fake_bedrock: FakeBedrock) -> None:
    text = unique("remote ")
    parts: list[str | Image] = [text, Image("https://example.com/cat.png")]
    with pytest.raises(PermanentError) as caught:
        await run(fake_bedrock, ChatRequest(CLAUDE, [Message("user", text, parts=parts)]))
    assert caught.value.status == 400 and "data: URL" in str(caught.value)
    assert fake_bedrock.calls_for(text) == []


# errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, PermanentError, "ValidationException"),
        (403, PermanentError, "AccessDeniedException"),
        (404, PermanentError, "ResourceNotFoundException"),
        (429, TransientError, "ThrottlingException"),
        (500, TransientError, "InternalServerException"),
        (503, TransientError, "ServiceUnavailableException"),
    ],
)
async def test_vendor_errors_become_permanent_or_transient(
    fake_bedrock: FakeBedrock, status: int, kind: type[Exception], code: str
) -> None:
    with pytest.raises(kind) as caught:
        await run(fake_bedrock, ChatRequest(f"{CLAUDE}@always={status}", user(unique())))
    assert isinstance(caught.value, PermanentError | TransientError)
    assert caught.value.status == status
    assert f"{code}: fake {code}" in str(caught.value)  # the vendor's message


async def test_throttling_carries_retry_after(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(TransientError) as caught:
        await run(fake_bedrock, ChatRequest(f"{CLAUDE}@always=429@retry_after=7", user(unique())))
    assert caught.value.retry_after == 7.0


async def test_an_exception_inside_the_stream_is_transient(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(TransientError) as caught:
        await run(fake_bedrock, ChatRequest(f"{CLAUDE}@streamerror", user(unique())))
    assert "ModelStreamErrorException: fake stream error" in str(caught.value)


async def test_a_stream_cut_inside_a_frame_is_transient(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(TransientError) as caught:
        await run(fake_bedrock, ChatRequest(f"{CLAUDE}@cut", user(unique())))
    assert caught.value.status == 502


async def test_a_read_timeout_is_transient(fake_bedrock: FakeBedrock) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        await run(fake_bedrock, ChatRequest(f"{CLAUDE}@delay=3000", user(unique())), timeout_s=0.3)
    assert caught.value.status == 504 and time.monotonic() - started < 2.5


async def test_no_region_is_a_permanent_error_naming_the_setting(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(PermanentError, match="AWS_REGION"):
        await run(fake_bedrock, ChatRequest(CLAUDE, user(unique())))


async def test_endpoint_and_region_come_from_the_aws_variables(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake_bedrock.url)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    text = unique("by env ")
    provider = BedrockProvider()  # no base_url: botocore reads the variable

    async def ignore(_: str) -> None:
        return None

    try:
        completion = await provider.stream_chat(ChatRequest(CLAUDE, user(text)), ignore)
    finally:
        await provider.close()
    assert completion.text == f"reply to: {text}"
    [call] = fake_bedrock.calls_for(text)
    assert "/eu-west-3/bedrock/aws4_request" in call.headers["Authorization"]
    # a deployment's own region wins over the variables
    deployed = unique("deployed ")
    await run(fake_bedrock, ChatRequest(CLAUDE, user(deployed)), region="ap-south-1")
    [call] = fake_bedrock.calls_for(deployed)
    assert "/ap-south-1/bedrock/aws4_request" in call.headers["Authorization"]


# embeddings ------------------------------------------------------------------------
async def test_titan_embeddings_come_in_order_with_the_vendors_token_count(
    fake_bedrock: FakeBedrock,
) -> None:
    texts = [unique("one "), unique("two three "), unique("four ")]
    embedder = BedrockEmbedder("amazon.titan-embed-text-v2:0", base_url=fake_bedrock.url)
    try:
        vectors, counted = await embedder.embed_counted(texts, 256)
        assert vectors == [fake_vector(t, 256) for t in texts]
        assert counted == 2 + 3 + 2
        assert len((await embedder.embed(texts[:1]))[0]) == 1024  # the port: `dim` numbers
        with pytest.raises(PermanentError, match="not 300"):
            await embedder.embed_counted(texts, 300)
    finally:
        await embedder.close()
    [call] = [c for c in fake_bedrock.calls_for(texts[1]) if c.body.get("dimensions") == 256]
    assert call.api == "invoke" and call.body == {"inputText": texts[1], "dimensions": 256}


async def test_cohere_embeddings_go_in_one_call(fake_bedrock: FakeBedrock) -> None:
    texts = [unique("c1 "), unique("c2 ")]
    embedder = BedrockEmbedder("cohere.embed-english-v3", base_url=fake_bedrock.url)
    try:
        assert await embedder.embed(texts) == [fake_vector(t, 1024) for t in texts]
    finally:
        await embedder.close()
    [call] = fake_bedrock.calls_for(texts[0])
    assert call.body == {"texts": texts, "input_type": "search_document"}


# the gateway -----------------------------------------------------------------------
GATEWAY_ROUTING = """
[retry]
max_attempts = 2
backoff_initial_s = 0.05

[models."bedrock-claude"]
price = {{ input = "3.00", output = "15.00", cached_input = "0.30" }}
[[models."bedrock-claude".deployments]]
provider = "bedrock"
model = "anthropic.claude-fake@cached=2"
base_url = "{bedrock}"
region = "us-west-2"

[models."bedrock-limited"]
price = {{ input = "3.00", output = "15.00" }}
[[models."bedrock-limited".deployments]]
provider = "bedrock"
model = "anthropic.claude-fake@status=429@retry_after=1@fail=1"
base_url = "{bedrock}"

[models."bedrock-down"]
fallbacks = ["claude-fake"]
price = {{ input = "3.00", output = "15.00" }}
[[models."bedrock-down".deployments]]
provider = "bedrock"
model = "anthropic.claude-fake@always=503"
base_url = "{bedrock}"

[models."bedrock-refusing"]
fallbacks = ["claude-fake"]
price = {{ input = "3.00", output = "15.00" }}
[[models."bedrock-refusing".deployments]]
provider = "bedrock"
model = "anthropic.claude-fake@always=400"
base_url = "{bedrock}"

[models."claude-fake"]
deployments = [{{ provider = "anthropic", base_url = "{llm}", api_key = "sk-ant-fake" }}]

[models."titan"]
price = {{ input = "0.02", output = "0" }}
[[models."titan".deployments]]
provider = "bedrock"
model = "amazon.titan-embed-text-v2:0"
base_url = "{bedrock}"
"""


def write_routing(folder: Path, fake_bedrock: FakeBedrock, fake_llm: FakeLLMServer) -> Path:
    path = folder / "routing.toml"
    path.write_text(GATEWAY_ROUTING.format(bedrock=fake_bedrock.url, llm=fake_llm.url))
    return path


async def no_delta(_: str) -> None:
    return None


@pytest.fixture
async def gateway(tmp_path: Path, fake_bedrock: FakeBedrock, fake_llm: FakeLLMServer) -> Gateway:
    config = load_routing(write_routing(tmp_path, fake_bedrock, fake_llm))
    return Gateway(config, catalog=ModelCatalog(config, PriceTable.load(TEST_PRICES)))


async def test_gateway_retries_bedrock_after_its_retry_after(
    gateway: Gateway, fake_bedrock: FakeBedrock
) -> None:
    text = unique("patience ")
    retries: list[dict[str, object]] = []

    async def on_retry(event: dict[str, object]) -> None:
        retries.append(event)

    try:
        completion, served = await gateway.chat(
            "bedrock-limited", ChatRequest("bedrock-limited", user(text)), no_delta, on_retry
        )
    finally:
        await gateway.close()
    assert completion.text == f"reply to: {text}" and served.provider == "bedrock"
    first, second = fake_bedrock.calls_for(text)
    assert second.at - first.at >= 0.95  # Retry-After: 1, not the 50 ms backoff
    assert [r["status"] for r in retries] == ["retrying"]


async def test_gateway_falls_back_from_bedrock_to_another_vendor(
    gateway: Gateway, fake_bedrock: FakeBedrock, fake_llm: FakeLLMServer
) -> None:
    down, refused = unique("down "), unique("refused ")

    async def on_retry(_: dict[str, object]) -> None:
        return None

    try:
        completion, served = await gateway.chat(
            "bedrock-down", ChatRequest("bedrock-down", user(down)), no_delta, on_retry
        )
        assert completion.text == f"reply to: {down}"
        assert (served.model, served.provider) == ("claude-fake", "anthropic")
        assert len(fake_bedrock.calls_for(down)) == 2 and len(fake_llm.calls_for(down)) == 1
        # a permanent error is neither retried nor fallen back from
        with pytest.raises(PermanentError, match="ValidationException"):
            await gateway.chat(
                "bedrock-refusing", ChatRequest("x", user(refused)), no_delta, on_retry
            )
        assert len(fake_bedrock.calls_for(refused)) == 1 and fake_llm.calls_for(refused) == []
    finally:
        await gateway.close()


async def test_gateway_embeds_on_bedrock_with_counted_tokens(
    gateway: Gateway, fake_bedrock: FakeBedrock
) -> None:
    text = unique("embed me ")

    async def on_retry(_: dict[str, object]) -> None:
        return None

    try:
        (vectors, counted), served = await gateway.embed("titan", [text], 512, on_retry)
    finally:
        await gateway.close()
    assert vectors == [fake_vector(text, 512)] and counted == 3
    assert served.provider == "bedrock"


# a real worker ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    fake_bedrock: FakeBedrock,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("bedrock")
    proc, settings = new_platform(services, fake_llm, folder / "logs")
    proc.env["AYUSH_ROUTING_FILE"] = str(write_routing(folder, fake_bedrock, fake_llm))
    proc.env.update(
        AWS_ACCESS_KEY_ID="AKIDBEDROCKTEST",
        AWS_SECRET_ACCESS_KEY="bedrock-test-secret",
        AWS_REGION="us-east-1",
    )
    with proc.serving("model-calls"):
        yield Running(proc, settings)


async def test_a_job_on_bedrock_records_usage_and_cost(
    platform: Running, db: Database, fake_bedrock: FakeBedrock
) -> None:
    tenant = await make_tenant(db)
    text = unique("job ")
    body: dict[str, object] = {
        "kind": "chat",
        "model": "bedrock-claude",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
    }
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        job_id = await submit(client, tenant, body)
        job = await wait_finished(client, tenant, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"] == f"reply to: {text}" and job["provider"] == "bedrock"
    # the fake counts 4 words in (2 more read from the cache) and 4 out
    assert job["usage"] == {"input_tokens": 6, "output_tokens": 4}
    [call] = fake_bedrock.calls_for(text)
    assert "/us-west-2/bedrock/aws4_request" in call.headers["Authorization"]
    [usage] = await usage_events(platform, job_id)
    assert usage["provider"] == "bedrock" and usage["model"] == "bedrock-claude"
    # 4 x $3/M + 2 cached x $0.30/M + 4 x $15/M
    assert Decimal(str(usage["cost_usd"])) == Decimal("0.0000726")


async def test_chat_completions_fall_back_from_bedrock_through_the_worker(
    platform: Running, db: Database, fake_bedrock: FakeBedrock, fake_llm: FakeLLMServer
) -> None:
    tenant = await make_tenant(db)
    text = unique("fall ")
    async with openai.AsyncOpenAI(
        base_url=f"{platform.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    ) as oai:
        stream = await oai.chat.completions.create(
            model="bedrock-down",
            messages=[{"role": "user", "content": text}],
            stream=True,
        )
        said = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert said == f"reply to: {text}"
    assert len(fake_bedrock.calls_for(text)) == 2
    assert [c.api for c in fake_llm.calls_for(text)] == ["anthropic"]


# routing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "mistral.mistral-large-2407-v1:0",
        "amazon.nova-micro-v1:0",
        "amazon.titan-embed-text-v2:0",
        "bedrock/amazon.nova-lite-v1:0",
    ],
)
def test_bedrock_model_ids_route_to_bedrock_and_are_priced(model: str) -> None:
    config = load_routing(None)
    [deployment] = config.route_for(model).deployments
    assert deployment.provider == "bedrock"
    assert deployment.model == model.removeprefix("bedrock/")
    catalog = ModelCatalog(config, PriceTable.load())
    assert catalog.check(model) and catalog.estimate(model, 1_000_000, 0) > 0


def test_a_region_is_for_bedrock_deployments_only(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(
        '[models."m"]\n'
        'deployments = [{ provider = "bedrock", model = "meta.x", region = "eu-west-1" }]\n'
    )
    [deployment] = load_routing(path).models["m"].deployments
    assert (deployment.provider, deployment.region) == ("bedrock", "eu-west-1")
    path.write_text('[models."m"]\ndeployments = [{ provider = "openai", region = "eu-west-1" }]\n')
    with pytest.raises(ValueError, match="region"):
        load_routing(path)
