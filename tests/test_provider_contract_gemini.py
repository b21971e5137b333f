"""The provider contract, for Gemini: the real `google-genai` SDK against a fake Gemini server.

The behaviours the OpenAI and Anthropic providers are held to (tests/test_gateway.py,
tests/test_model_calls.py): streamed deltas, system and multi-turn, tool calls both
ways, images, JSON schema output, sampling parameters on the wire, errors (4xx
permanent, 429/5xx transient with Retry-After honoured), usage with cached and
thinking tokens, cost; then through a real worker: a job on gemini-2.5-flash, and a
Gemini model falling back to an OpenAI one.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from infra.db.engine import Database
from infra.embeddings.gemini import GeminiEmbedder
from infra.errors import PermanentError, TransientError
from infra.local_stack import ServiceAddresses
from infra.pricing import PriceTable
from infra.providers.base import ChatRequest, Completion, Image, Message, Tool
from infra.providers.gemini import GeminiProvider
from infra.routing.config import load_routing
from infra.routing.gateway import Gateway
from tests.conftest import Running, make_tenant, new_platform
from tests.fakes.gemini import SIGNATURE, FakeGeminiServer
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique
from tests.test_gateway import usage_events
from tests.test_jobs_http import chat, submit, wait_finished

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
LOOKUP = Tool(
    "lookup", "Look a thing up", {"type": "object", "properties": {"echo": {"type": "string"}}}
)


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        yield server


@pytest.fixture
async def gemini(fake_gemini: FakeGeminiServer) -> AsyncIterator[GeminiProvider]:
    provider = GeminiProvider(api_key="gm-fake", base_url=fake_gemini.url, timeout_s=5)
    yield provider
    await provider.close()


async def _run(provider: GeminiProvider, request: ChatRequest) -> tuple[list[str], Completion]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    return deltas, await provider.stream_chat(request, on_delta)


def _camel(value: object) -> object:
    """Proto JSON's field names in camel case, as the API reads them either way."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): _camel(v)
            for k, v in value.items()
        }
    return value


def _user(text: str) -> list[Message]:
    return [Message("user", text)]


async def test_gemini_streams_deltas_with_system_instruction_and_turns(
    gemini: GeminiProvider, fake_gemini: FakeGeminiServer
) -> None:
    text = unique("gemini ")
    messages = [
        Message("system", "be brief"),
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("user", text),
    ]
    deltas, completion = await _run(gemini, ChatRequest("gemini-fake", messages))
    assert deltas == ["reply", " to:", *[" " + w for w in text.split(" ")]]
    assert completion.text == f"reply to: {text}"
    assert completion.finish_reason == "stop"
    [call] = fake_gemini.calls_for(text)
    assert call.method == "streamGenerateContent" and "alt=sse" in call.path
    assert call.headers["x-goog-api-key"] == "gm-fake"
    assert call.body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert [c["role"] for c in call.body["contents"]] == ["user", "model", "user"]


async def test_gemini_sampling_stop_seed_and_json_schema_reach_the_wire(
    gemini: GeminiProvider, fake_gemini: FakeGeminiServer
) -> None:
    text = unique("structured ")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = ChatRequest(
        "gemini-fake", _user(text), temperature=0.3, top_p=0.4, seed=7, max_tokens=50,
        stop=["END"], response_format={"type": "json_schema", "json_schema": {"schema": schema}},
    )  # fmt: skip
    await _run(gemini, request)
    [call] = fake_gemini.calls_for(text)
    assert call.body["generationConfig"] == {
        "temperature": 0.3, "topP": 0.4, "seed": 7, "maxOutputTokens": 50,
        "stopSequences": ["END"], "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }  # fmt: skip
    text = unique("json object ")
    await _run(
        gemini, ChatRequest("gemini-fake", _user(text), response_format={"type": "json_object"})
    )
    [call] = fake_gemini.calls_for(text)
    assert call.body["generationConfig"] == {"responseMimeType": "application/json"}


async def test_gemini_tool_calls_both_ways_keep_the_thought_signature(
    gemini: GeminiProvider, fake_gemini: FakeGeminiServer
) -> None:
    question = unique("weather in ")
    messages = _user(question)
    _, completion = await _run(
        gemini, ChatRequest("gemini-fake@tool", messages, tools=[LOOKUP], forced_tool="lookup")
    )
    assert completion.finish_reason == "tool_calls"
    [tool_call] = completion.tool_calls
    assert tool_call.name == "lookup" and json.loads(tool_call.arguments) == {"echo": question}
    sent = fake_gemini.calls_for(question)[-1].body
    [declaration] = sent["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "lookup" and declaration["description"] == "Look a thing up"
    assert sent["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY", "allowedFunctionNames": ["lookup"],
    }  # fmt: skip

    # The tool's answer goes back as a functionResponse named after the call; the
    # call goes back with its thought signature; the model answers in text.
    follow_up = [
        *messages,
        Message("assistant", "", tool_calls=[tool_call]),
        Message("tool", '{"sky": "sunny"}', tool_call_id=tool_call.id),
    ]
    _, answer = await _run(gemini, ChatRequest("gemini-fake@tool", follow_up, tools=[LOOKUP]))
    assert answer.finish_reason == "stop"
    contents = fake_gemini.calls_for(question)[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    [call_part] = contents[1]["parts"]
    assert call_part["functionCall"] == {"name": "lookup", "args": {"echo": question}}
    assert base64.b64decode(call_part["thoughtSignature"]) == SIGNATURE
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"sky": "sunny"}}}
    ]


async def test_a_signature_too_long_for_an_id_goes_back_as_the_documented_skip(
    gemini: GeminiProvider, fake_gemini: FakeGeminiServer
) -> None:
    question = unique("long thoughts ")
    model = "gemini-fake@tool@longsig"
    _, completion = await _run(gemini, ChatRequest(model, _user(question), tools=[LOOKUP]))
    [tool_call] = completion.tool_calls
    assert len(tool_call.id) <= 200  # what a job's tool call id may be (schemas/jobs.py)
    follow_up = [
        *_user(question),
        Message("assistant", "", tool_calls=[tool_call]),
        Message("tool", "sunny", tool_call_id=tool_call.id),
    ]
    await _run(gemini, ChatRequest(model, follow_up, tools=[LOOKUP]))
    sent = fake_gemini.calls_for(question)[-1].body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "skip_thought_signature_validator"


async def test_an_error_of_on_delta_is_not_taken_for_the_vendors(gemini: GeminiProvider) -> None:
    async def broken(_: str) -> None:
        raise RuntimeError("the caller's own failure")

    with pytest.raises(RuntimeError, match="the caller's own failure"):
        await gemini.stream_chat(ChatRequest("gemini-fake", _user(unique())), broken)


async def test_gemini_tool_answer_naming_no_call_is_refused(gemini: GeminiProvider) -> None:
    messages = [Message("user", "hi"), Message("tool", "sunny", tool_call_id="call_nobody")]
    with pytest.raises(PermanentError) as refused:
        await _run(gemini, ChatRequest("gemini-fake", messages))
    assert refused.value.status == 400 and "call_nobody" in str(refused.value)


async def test_gemini_gets_inline_images_and_https_images_as_file_data(
    gemini: GeminiProvider, fake_gemini: FakeGeminiServer
) -> None:
    text = unique("describe ")
    parts: list[str | Image] = [
        text,
        Image(f"data:image/png;base64,{PNG}"),
        Image("https://example.com/cat.jpg?s=1"),
    ]
    await _run(gemini, ChatRequest("gemini-fake", [Message("user", text, parts=parts)]))
    [call] = fake_gemini.calls_for(text)
    # (The SDK writes some nested keys in snake case; the API reads both.)
    assert _camel(call.body["contents"][0]["parts"]) == [
        {"text": text},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg?s=1", "mimeType": "image/jpeg"}},
    ]


async def test_gemini_usage_counts_cached_and_thinking_tokens_and_is_priced(
    gemini: GeminiProvider,
) -> None:
    text = "one two three"
    _, completion = await _run(gemini, ChatRequest("gemini-fake@cached=2@thoughts=5", _user(text)))
    # prompt: 3 words; answer: "reply to: one two three" is 5, plus 5 thinking tokens
    assert (completion.input_tokens, completion.output_tokens) == (3, 10)
    assert completion.cached_input_tokens == 2
    assert not completion.usage_estimated
    prices = PriceTable.load()
    # gemini-2.5-flash: $0.30/M input, $0.03/M cached input, $2.50/M output
    cost = prices.cost("gemini-2.5-flash", 3, 10, 2)
    assert cost == (Decimal("0.30") * 1 + Decimal("0.03") * 2 + Decimal("2.50") * 10) / 1_000_000

    _, estimated = await _run(gemini, ChatRequest("gemini-fake@nousage", _user(text)))
    assert estimated.usage_estimated and estimated.output_tokens > 0


@pytest.mark.parametrize(
    ("directive", "kind", "status", "retry_after"),
    [
        ("@always=400", PermanentError, 400, None),
        ("@always=403", PermanentError, 403, None),
        ("@always=500", TransientError, 500, None),
        ("@always=503", TransientError, 503, None),
        ("@always=429@retry_after=3", TransientError, 429, 3.0),
        ("@always=429@retry_info=2.5", TransientError, 429, 2.5),
    ],
)
async def test_gemini_errors_map_to_permanent_or_transient_with_retry_after(
    gemini: GeminiProvider, directive: str, kind: type, status: int, retry_after: float | None
) -> None:
    with pytest.raises(kind) as caught:
        await _run(gemini, ChatRequest(f"gemini-fake{directive}", _user(unique())))
    assert getattr(caught.value, "status", None) == status
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert "fake failure" in str(caught.value)


async def test_gemini_unreachable_is_transient(fake_gemini: FakeGeminiServer) -> None:
    provider = GeminiProvider(api_key="k", base_url="http://127.0.0.1:9", timeout_s=2)
    try:
        with pytest.raises(TransientError) as caught:
            await _run(provider, ChatRequest("gemini-fake", _user("anyone?")))
        assert caught.value.status == 502
    finally:
        await provider.close()


@pytest.fixture
def vertex_adc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Application Default Credentials: an authorized-user file holding a token that has
    not expired, so nothing asks Google's token endpoint for one."""
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({
        "type": "authorized_user", "client_id": "c", "client_secret": "s",
        "refresh_token": "r", "token": "vertex-token", "expiry": "2099-01-01T00:00:00Z",
    }))  # fmt: skip
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))


@pytest.mark.usefixtures("vertex_adc")
async def test_gemini_on_vertex_uses_the_project_path_and_adc_token(
    fake_gemini: FakeGeminiServer,
) -> None:
    """Vertex AI: the project/location path, API v1beta1, a bearer token from ADC."""
    provider = GeminiProvider(
        base_url=fake_gemini.url, project="proj-1", location="europe-west4", timeout_s=5
    )
    text = unique("vertex ")
    try:
        _, completion = await _run(provider, ChatRequest("gemini-fake", _user(text)))
    finally:
        await provider.close()
    assert completion.text == f"reply to: {text}"
    [call] = fake_gemini.calls_for(text)
    assert call.path.startswith(
        "/v1beta1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-fake:"
    )
    assert call.headers["Authorization"] == "Bearer vertex-token"
    assert "x-goog-api-key" not in call.headers


async def test_gemini_embeddings_in_one_batch_call(fake_gemini: FakeGeminiServer) -> None:
    embedder = GeminiEmbedder("gemini-embedding-001", dim=4, api_key="k", base_url=fake_gemini.url)
    try:
        vectors = await embedder.embed(["alpha beta", "gamma"])
        counted, used = await embedder.embed_counted(["one two three"], 6)
    finally:
        await embedder.close()
    assert [len(v) for v in vectors] == [4, 4] and vectors[0] != vectors[1]
    assert len(counted[0]) == 6 and used > 0
    batch = [c for c in fake_gemini.calls if c.model == "gemini-embedding-001"]
    assert [c.method for c in batch] == ["batchEmbedContents", "batchEmbedContents"]
    assert [r["outputDimensionality"] for r in batch[0].body["requests"]] == [4, 4]


@pytest.mark.usefixtures("vertex_adc")
async def test_text_embedding_004_on_vertex_counts_the_tokens_vertex_reports(
    fake_gemini: FakeGeminiServer,
) -> None:
    embedder = GeminiEmbedder(
        "text-embedding-004", dim=5, base_url=fake_gemini.url, project="proj-2", location="us-east1"
    )
    try:
        vectors, used = await embedder.embed_counted(["one two", "three four five"], 5)
    finally:
        await embedder.close()
    assert [len(v) for v in vectors] == [5, 5] and used == 5  # 2 + 3, Vertex's statistics
    [call] = [c for c in fake_gemini.calls if "proj-2" in c.path]
    assert call.path.endswith("/publishers/google/models/text-embedding-004:predict")
    assert call.headers["Authorization"] == "Bearer vertex-token"


async def test_gemini_family_routes_without_a_routing_file(
    fake_gemini: FakeGeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gemini-* and text-embedding-004 go to Gemini by GEMINI_BASE_URL and GEMINI_API_KEY."""
    monkeypatch.setenv("GEMINI_BASE_URL", fake_gemini.url)
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    gateway = Gateway(load_routing(None))
    text = unique("family ")

    async def on_delta(_: str) -> None: ...

    async def on_retry(_: dict[str, object]) -> None: ...

    try:
        completion, served = await gateway.chat(
            "gemini-2.5-flash", ChatRequest("gemini-2.5-flash", _user(text)), on_delta, on_retry
        )
        (vectors, _), embedded_by = await gateway.embed("text-embedding-004", ["x"], 3, on_retry)
    finally:
        await gateway.close()
    assert served.provider == "gemini" and completion.text == f"reply to: {text}"
    assert embedded_by.provider == "gemini" and len(vectors[0]) == 3
    [call] = fake_gemini.calls_for(text)
    assert call.headers["x-goog-api-key"] == "env-key"


# Through a real ingress and model-calls worker ---------------------------------------

ROUTING = """
[retry]
max_attempts = 2
backoff_initial_s = 0.05
backoff_max_s = 1

[models."gemini-down"]
fallbacks = ["gpt-fake"]
deployments = [{{ provider = "gemini", model = "gemini-fake@always=503", base_url = "{gemini}" }}]

[[models."gemini-limited".deployments]]
provider = "gemini"
model = "gemini-fake@fail=1@status=429@retry_after=1"
base_url = "{gemini}"

[models."gpt-fake"]
deployments = [{{ provider = "openai", base_url = "{v1}", api_key = "sk-fake" }}]
"""


@pytest.fixture(scope="module")
def gemini_platform(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    fake_gemini: FakeGeminiServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("gemini")
    routing = folder / "routing.toml"
    routing.write_text(ROUTING.format(gemini=fake_gemini.url, v1=fake_llm.openai_base_url))
    platform, settings = new_platform(services, fake_llm, folder / "logs")
    platform.env.update(
        {
            "AYUSH_ROUTING_FILE": str(routing),
            "GEMINI_BASE_URL": fake_gemini.url,
            "GEMINI_API_KEY": "gm-worker",
        }
    )
    with platform.serving("model-calls"):
        yield Running(platform, settings)


@pytest.fixture
async def oai(gemini_platform: Running, db: Database) -> AsyncIterator[openai.AsyncOpenAI]:
    tenant = await make_tenant(db)
    async with openai.AsyncOpenAI(
        base_url=f"{gemini_platform.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    ) as client:
        yield client


async def test_a_gemini_job_completes_with_usage_and_cost(
    gemini_platform: Running, db: Database, fake_gemini: FakeGeminiServer
) -> None:
    tenant = await make_tenant(db)
    text = unique("flash ")
    async with httpx.AsyncClient(base_url=gemini_platform.url, timeout=30) as client:
        job_id = await submit(client, tenant, chat(text, model="gemini-2.5-flash"))
        job = await wait_finished(client, tenant, job_id)
    assert job["status"] == "succeeded", job
    assert job["provider"] == "gemini" and job["result"] == f"reply to: {text}"
    assert job["usage"] == {"input_tokens": 2, "output_tokens": 4}
    [call] = fake_gemini.calls_for(text)
    assert call.model == "gemini-2.5-flash" and call.headers["x-goog-api-key"] == "gm-worker"
    [usage] = await usage_events(gemini_platform, job_id)
    # 2 x $0.30/M in + 4 x $2.50/M out
    assert Decimal(str(usage["cost_usd"])) == Decimal("0.0000106")


async def test_a_gemini_model_falls_back_to_openai_on_repeated_503(
    oai: openai.AsyncOpenAI, fake_gemini: FakeGeminiServer, fake_llm: FakeLLMServer
) -> None:
    text = unique("fallback ")
    completion = await oai.chat.completions.create(
        model="gemini-down", messages=[{"role": "user", "content": text}]
    )
    assert completion.choices[0].message.content == f"reply to: {text}"
    assert completion.model == "gpt-fake"
    assert [c.method for c in fake_gemini.calls_for(text)] == ["streamGenerateContent"] * 2
    assert [c.api for c in fake_llm.calls_for(text)] == ["openai"]


async def test_a_gemini_429_is_retried_after_its_retry_after(
    oai: openai.AsyncOpenAI, fake_gemini: FakeGeminiServer
) -> None:
    text = unique("patience ")
    completion = await oai.chat.completions.create(
        model="gemini-limited", messages=[{"role": "user", "content": text}]
    )
    assert completion.choices[0].message.content == f"reply to: {text}"
    first, second = fake_gemini.calls_for(text)
    assert second.at - first.at >= 1.0  # Retry-After: 1, not the 50 ms backoff


async def test_gemini_tools_through_the_openai_format(
    oai: openai.AsyncOpenAI, fake_gemini: FakeGeminiServer
) -> None:
    question = unique("find ")
    tools = [{"type": "function", "function": {
        "name": "lookup", "parameters": {"type": "object", "properties": {}}}}]  # fmt: skip
    messages: list[dict[str, object]] = [{"role": "user", "content": question}]
    completion = await oai.chat.completions.create(
        model="gemini-fake@tool",
        messages=messages,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[arg-type]
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"echo": question}  # type: ignore[union-attr]
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = await oai.chat.completions.create(
        model="gemini-fake@tool",
        messages=follow_up,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content == f"reply to: {question}"
    contents = fake_gemini.calls_for(question)[-1].body["contents"]
    assert contents[-1]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"result": "sunny"}}}
    ]
    assert base64.b64decode(contents[-2]["parts"][0]["thoughtSignature"]) == SIGNATURE


def test_unknown_model_error_names_gemini() -> None:
    from infra.providers.router import route

    with pytest.raises(PermanentError) as refused:
        route(f"mystery-{uuid.uuid4().hex[:6]}")
    assert "gemini-*" in str(refused.value)


def test_gemini_deployments_take_a_project_and_location(tmp_path: Path) -> None:
    example = load_routing(Path(__file__).resolve().parents[1] / "docs" / "routing.example.toml")
    developer, vertex = example.route_for("gemini-2.5-flash").deployments
    assert developer.provider == vertex.provider == "gemini" and developer.project is None
    assert (vertex.project, vertex.location) == ("my-gcp-project", "europe-west4")
    assert example.route_for("gemini-embedding-001").deployments[0].provider == "gemini"
    assert load_routing(None).route_for("text-embedding-004").deployments[0].provider == "gemini"
    assert (
        load_routing(None).route_for("text-embedding-3-small").deployments[0].provider == "openai"
    )
    path = tmp_path / "routing.toml"
    path.write_text('[models."a"]\ndeployments = [{ provider = "openai", project = "p" }]\n')
    with pytest.raises(ValueError, match="`project` needs provider gemini"):
        load_routing(path)
