"""Azure OpenAI passes the provider contract the OpenAI and Anthropic providers pass.

The gateway drives a fake that speaks Azure's wire (deployment paths, `api-version`,
`api-key`): streaming deltas, tool calls both ways, images, JSON schema output,
sampling reaching the wire, 4xx permanent / 429 and 5xx transient with Retry-After,
fallback to another vendor, usage with cached tokens and cost, embeddings, and the
content filter's refusals.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from infra.errors import PermanentError, TransientError
from infra.providers.azure import AzureOpenAIProvider, azure_wire
from infra.providers.base import ChatRequest, Image, Message, Tool, ToolCall
from infra.routing.config import load_routing
from infra.routing.gateway import Gateway
from tests.fakes import azure
from tests.fakes.azure import FakeAzureServer
from tests.harness import unique

VERSION = "2024-10-21"
PRICE = '{ input = "2.50", output = "10.00", cached_input = "1.25" }'


def routing(url: str) -> str:
    az = f'provider = "azure", base_url = "{url}", api_version = "{VERSION}"'
    az += f', api_key = "{azure.API_KEY}"'
    return f"""
[models."az-chat"]
price = {PRICE}
deployments = [{{ {az}, model = "gpt-fake@cached=2", deployment = "chat-prod" }}]

[models."az-named"]
price = {PRICE}
deployments = [{{ {az}, model = "gpt-fake" }}]

[models."az-tool"]
price = {PRICE}
deployments = [{{ {az}, model = "gpt-fake@tool" }}]

[models."az-429"]
price = {PRICE}
deployments = [{{ {az}, model = "gpt-fake@status=429@retry_after=1@fail=1" }}]

[models."az-400"]
price = {PRICE}
deployments = [{{ {az}, model = "gpt-fake@always=400" }}]

[models."az-down"]
price = {PRICE}
max_attempts = 2
fallbacks = ["claude-fake"]
deployments = [{{ {az}, model = "gpt-fake@always=503" }}]

[models."claude-fake"]
price = {PRICE}
deployments = [{{ provider = "anthropic", base_url = "{url}", api_key = "sk-ant-fake" }}]

[models."az-entra"]
price = {PRICE}
deployments = [{{ provider = "azure", base_url = "{url}", model = "gpt-fake" }}]

[models."az-embed"]
price = {{ input = "0.02", output = "0" }}
deployments = [{{ {az}, model = "text-embedding-fake", deployment = "emb-prod" }}]

[retry]
backoff_initial_s = 0.01
backoff_max_s = 0.02
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAzureServer]:
    with FakeAzureServer() as server:
        yield server


@pytest.fixture
async def gateway(fake: FakeAzureServer, tmp_path: Path) -> AsyncIterator[Gateway]:
    path = tmp_path / "routing.toml"
    path.write_text(routing(fake.url))
    gateway = Gateway(load_routing(path))
    try:
        yield gateway
    finally:
        await gateway.close()


async def no_retry(_: dict[str, object]) -> None:
    return None


def ask(text: str, **fields: object) -> ChatRequest:
    return ChatRequest("", [Message("user", text)], **fields)  # type: ignore[arg-type]


async def test_azure_streams_deltas_from_the_deployments_url(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    text = unique("hello azure ")
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    answer, served = await gateway.chat("az-chat", ask(text), on_delta, no_retry)
    assert answer.text == f"reply to: {text}" and "".join(deltas) == answer.text
    assert len(deltas) > 1 and served.provider == "azure"
    call = fake.azure_calls[-1]
    assert (call.deployment, call.operation) == ("chat-prod", "chat/completions")
    assert call.api_version == VERSION and call.api_key == azure.API_KEY
    assert call.authorization is None  # the key goes in `api-key`, never as a bearer


async def test_azure_deployment_defaults_to_the_model_name(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    await gateway.chat("az-named", ask(unique("default ")), no_retry, no_retry)
    assert fake.azure_calls[-1].deployment == "gpt-fake"


async def test_azure_usage_counts_cached_tokens_and_is_priced(gateway: Gateway) -> None:
    answer, served = await gateway.chat("az-chat", ask("one two three four"), no_retry, no_retry)
    assert (answer.input_tokens, answer.cached_input_tokens) == (4, 2)
    assert not answer.usage_estimated and answer.output_tokens == 6
    cost = gateway.catalog.cost(served.model, served.deployment.model, 4, answer.output_tokens, 2)
    # 2 x 2.50 + 2 x 1.25 (cached) + 6 x 10.00 per million
    assert cost == Decimal("0.0000675")


async def test_azure_sampling_stop_and_json_schema_reach_the_wire(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    text = unique("structured ")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    request = ask(text, temperature=0.2, top_p=0.4, max_tokens=55, stop=("END",),
                  response_format=fmt)  # fmt: skip
    await gateway.chat("az-named", request, no_retry, no_retry)
    [call] = fake.calls_for(text)
    sent = {k: call.body.get(k) for k in ("temperature", "top_p", "max_tokens", "stop")}
    assert sent == {"temperature": 0.2, "top_p": 0.4, "max_tokens": 55, "stop": ["END"]}
    assert call.body["response_format"] == fmt


async def test_azure_images_reach_the_wire_in_order(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    text = unique("look ")
    image = Image("data:image/png;base64,iVBORw0KGgo=", "low")
    message = Message("user", text, parts=(text, image, "and then?"))
    await gateway.chat("az-named", ChatRequest("", [message]), no_retry, no_retry)
    [call] = fake.calls_for(f"{text} and then?")
    assert call.body["messages"][0]["content"] == [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": image.url, "detail": "low"}},
        {"type": "text", "text": "and then?"},
    ]


async def test_azure_tool_calls_both_ways(gateway: Gateway, fake: FakeAzureServer) -> None:
    text = unique("weather ")
    tool = Tool("lookup", "find things", {"type": "object", "properties": {}})
    request = ChatRequest("", [Message("user", text)], tools=[tool])
    called, _ = await gateway.chat("az-tool", request, no_retry, no_retry)
    assert called.finish_reason == "tool_calls"
    assert called.tool_calls == [ToolCall("call_fake", "lookup", f'{{"echo": "{text}"}}')]
    # The tool's answer goes back and the model replies in text.
    follow = ChatRequest(
        "",
        [
            Message("user", text),
            Message("assistant", "", tool_calls=called.tool_calls),
            Message("tool", "sunny", tool_call_id="call_fake"),
        ],
        tools=[tool],
    )
    answered, _ = await gateway.chat("az-tool", follow, no_retry, no_retry)
    assert answered.text == f"reply to: {text}" and not answered.tool_calls
    sent = fake.calls_for(text)[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_fake"}


async def test_azure_429_is_retried_after_its_retry_after(gateway: Gateway) -> None:
    events: list[dict[str, object]] = []

    async def on_retry(event: dict[str, object]) -> None:
        events.append(event)

    started = time.monotonic()
    answer, _ = await gateway.chat("az-429", ask(unique("busy ")), no_retry, on_retry)
    assert answer.text.startswith("reply to: busy")
    assert time.monotonic() - started >= 1.0  # Retry-After: 1, not the 0.01 s backoff
    assert [e["status"] for e in events] == ["retrying"] and "429" in str(events[0]["error"])


async def test_azure_4xx_is_permanent_and_not_retried(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    text = unique("bad ")
    with pytest.raises(PermanentError) as refused:
        await gateway.chat("az-400", ask(text), no_retry, no_retry)
    assert refused.value.status == 400 and len(fake.calls_for(text)) == 1


async def test_azure_5xx_falls_back_to_another_vendor(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    text = unique("down ")
    answer, served = await gateway.chat("az-down", ask(text), no_retry, no_retry)
    assert served.model == "claude-fake" and served.provider == "anthropic"
    assert [c.api for c in fake.calls_for(text)] == ["openai", "openai", "anthropic"]
    assert answer.text == f"reply to: {text}"


async def test_azure_content_filter_refusal_is_permanent_and_says_so(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    before = len(fake.azure_calls)
    with pytest.raises(PermanentError, match=r"content filter refused the prompt \(violence\)"):
        await gateway.chat("az-named", ask(f"{azure.FILTERED} please"), no_retry, no_retry)
    assert len(fake.azure_calls) == before + 1  # not retried


async def test_azure_entra_token_is_sent_as_a_bearer_from_the_environment(
    gateway: Gateway, fake: FakeAzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_VERSION", VERSION)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", azure.AD_TOKEN)
    answer, _ = await gateway.chat("az-entra", ask(unique("entra ")), no_retry, no_retry)
    assert answer.text.startswith("reply to: entra")
    call = fake.azure_calls[-1]
    assert call.authorization == f"Bearer {azure.AD_TOKEN}" and call.api_key is None


async def test_azure_without_api_version_or_credentials_names_the_variables(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_VERSION", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PermanentError) as refused:
        await gateway.chat("az-entra", ask("x"), no_retry, no_retry)
    message = str(refused.value)
    assert "OPENAI_API_VERSION" in message and "AZURE_OPENAI_API_KEY" in message
    assert "AZURE_OPENAI_ENDPOINT" not in message  # base_url gave the endpoint


async def test_azure_embeddings_come_from_the_deployments_url(
    gateway: Gateway, fake: FakeAzureServer
) -> None:
    (vectors, used), served = await gateway.embed("az-embed", ["a b", "c"], 4, no_retry)
    assert [len(v) for v in vectors] == [4, 4] and used == 3 and served.provider == "azure"
    call = fake.azure_calls[-1]
    assert (call.deployment, call.operation, call.api_version) == (
        "emb-prod",
        "embeddings",
        VERSION,
    )


async def test_fake_azure_refuses_a_call_without_api_version(fake: FakeAzureServer) -> None:
    # The fake holds the provider to Azure's rules: no api-version, no answer.
    async with aiohttp.ClientSession() as session:
        url = f"{fake.url}/openai/deployments/x/chat/completions"
        body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"api-key": azure.API_KEY}
        async with session.post(url, json=body, headers=headers) as missing:
            assert missing.status == 400
        async with session.post(url + "?api-version=1", json=body) as unsigned:
            assert unsigned.status == 401


async def test_azure_unreachable_endpoint_is_transient() -> None:
    wire = azure_wire("d", endpoint="http://127.0.0.1:9", api_version=VERSION, api_key="k")
    provider = AzureOpenAIProvider(name="azure", wire=wire, timeout_s=5)
    try:
        with pytest.raises(TransientError) as failed:
            await provider.stream_chat(ask("x"), no_retry)
    finally:
        await provider.close()
    assert failed.value.status == 502
