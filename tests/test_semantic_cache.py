"""The semantic cache, end to end through the `openai` SDK, and its store in Postgres.

A real ingress and model-calls worker (questions embedded by hashing, as the
suite's memories are: a reordered sentence is near, other words are far), the
fake vendor counting the calls that reached it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import text

from consumers.groups.model_calls import semantic
from infra.db.engine import Database
from infra.db.semantic_cache import Entry, SemanticCacheStore
from infra.db.tenants import create_api_key
from infra.db.user_data import erase_user
from infra.embeddings.hashing import HashingEmbedder
from infra.local_stack import ServiceAddresses
from schemas.jobs import ChatJob
from tests.conftest import Running, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique

ROUTING = """
[models."gpt-fake"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [{{ provider = "openai", base_url = "{v1}", api_key = "sk-fake" }}]

[models."gpt-other"]
price = {{ input = "5.00", output = "7.00" }}
deployments = [{{ provider = "openai", model = "gpt-fake", base_url = "{v1}" }}]
"""

# Hashing puts a sentence and its reordering at ~0.85, a changed noun well below.
THRESHOLD = 0.8
SEMANTIC = {"X-Ayush-Cache": "semantic"}


@pytest.fixture(scope="module")
def platform(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("semantic")
    routing = folder / "routing.toml"
    routing.write_text(ROUTING.format(v1=fake_llm.openai_base_url))
    running, settings = new_platform(services, fake_llm, folder / "logs")
    running.env["AYUSH_ROUTING_FILE"] = str(routing)
    running.env["AYUSH_SEMANTIC_CACHE_THRESHOLD"] = str(THRESHOLD)
    with running.serving("model-calls"):
        yield Running(running, settings)


async def _client(platform: Running, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
async def oai(platform: Running, db: Database) -> AsyncIterator[openai.AsyncOpenAI]:
    tenant = await make_tenant(db)
    async with await _client(platform, tenant.key) as client:
        yield client


def question(topic: str) -> str:
    return f"tell me please what the capital of {topic} is"


def reworded(topic: str) -> str:
    return f"please tell me what the capital of {topic} is"


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def ask(
    client: openai.AsyncOpenAI, text: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model=kwargs.pop("model", "gpt-fake"),
        messages=user(text),
        extra_headers=headers if headers is not None else SEMANTIC,
        **kwargs,
    )


async def test_a_reworded_question_is_served_from_the_semantic_cache(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    topic = unique("land")
    first = await ask(oai, question(topic))
    assert first.headers["x-ayush-cache"] == "miss"
    second = await ask(oai, reworded(topic))
    assert second.headers["x-ayush-cache"] == "semantic-hit"
    similarity = float(second.headers["x-ayush-cache-similarity"])
    assert THRESHOLD <= similarity < 1
    assert second.parse().choices[0].message.content == f"reply to: {question(topic)}"
    assert Decimal(second.headers["x-ayush-cost-usd"]) == 0
    assert fake_llm.calls_for(reworded(topic)) == []

    # streamed: the cached answer comes back as a stream
    stream = await oai.chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=user(f"please tell me   what the capital of {topic} is"),  # type: ignore[arg-type]
        extra_headers=SEMANTIC,
        stream=True,
    )
    assert stream.headers["x-ayush-cache"] == "semantic-hit"
    assert float(stream.headers["x-ayush-cache-similarity"]) >= THRESHOLD
    text = ""
    async for chunk in stream.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == f"reply to: {question(topic)}"
    assert len(fake_llm.calls_for(question(topic))) == 1


async def test_other_parameters_model_tenant_or_tools_are_a_miss(
    oai: openai.AsyncOpenAI, platform: Running, db: Database, fake_llm: FakeLLMServer
) -> None:
    topic = unique("land")
    assert (await ask(oai, question(topic))).headers["x-ayush-cache"] == "miss"
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    others: list[dict[str, Any]] = [
        {"temperature": 0.5},
        {"max_tokens": 17},
        {"model": "gpt-other"},
        {"tools": [tool]},
    ]
    for other in others:
        answer = await ask(oai, reworded(topic), **other)
        assert answer.headers["x-ayush-cache"] == "miss", other
    stranger = await make_tenant(db)
    async with await _client(platform, stranger.key) as theirs:
        assert (await ask(theirs, reworded(topic))).headers["x-ayush-cache"] == "miss"
    # Every one of them went to the model; the same request again is a hit.
    assert len(fake_llm.calls_for(reworded(topic))) == len(others) + 1
    again = await ask(oai, reworded(topic), temperature=0.5)
    assert again.headers["x-ayush-cache"] in ("hit", "semantic-hit")


async def test_a_request_with_memory_recall_is_never_cached(
    oai: openai.AsyncOpenAI, db: Database, fake_llm: FakeLLMServer
) -> None:
    topic = unique("land")
    memory = {"memory": {"user_id": unique("u")}}
    for _ in range(2):
        answer = await ask(oai, question(topic), extra_body=memory)
        assert answer.headers["x-ayush-cache"] == "miss"
    assert len(fake_llm.calls_for(question(topic))) == 2
    job = uuid.UUID(answer.headers["x-ayush-job-id"])
    async with db.session() as session:
        tenant = (
            await session.execute(text("SELECT tenant_id FROM jobs WHERE id = :j"), {"j": job})
        ).scalar_one()
        rows = (
            await session.execute(
                text("SELECT count(*) FROM semantic_cache WHERE tenant_id = :t"), {"t": tenant}
            )
        ).scalar_one()
    assert rows == 0


async def test_an_expired_answer_is_never_served(
    oai: openai.AsyncOpenAI, db: Database, fake_llm: FakeLLMServer
) -> None:
    topic = unique("land")
    first = await ask(oai, question(topic))
    job = uuid.UUID(first.headers["x-ayush-job-id"])
    # Its time has come: the row's expiry moved to the past.
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE semantic_cache SET expires_at = now() - interval '1 second' "
                "WHERE tenant_id = (SELECT tenant_id FROM jobs WHERE id = :j)"
            ),
            {"j": job},
        )
    assert (await ask(oai, reworded(topic))).headers["x-ayush-cache"] == "miss"
    assert len(fake_llm.calls_for(reworded(topic))) == 1


async def test_without_opting_in_nothing_is_served_by_meaning(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    topic = unique("land")
    await ask(oai, question(topic))  # cached for those who ask
    plain = await ask(oai, reworded(topic), headers={})
    assert "x-ayush-cache" not in plain.headers
    exact_only = await ask(oai, reworded(topic), headers={"X-Ayush-Cache": "true"})
    assert exact_only.headers["x-ayush-cache"] == "miss"
    assert len(fake_llm.calls_for(reworded(topic))) == 2


async def test_a_tenant_setting_opts_in_and_a_threshold_header_tightens(
    platform: Running, db: Database, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as http:
        put = await http.put(
            "/v1/tenant/settings", json={"semantic_cache": True}, headers=admin.headers
        )
        assert put.status_code == 200 and put.json()["semantic_cache"] is True
    # A key read after the change (each ingress caches a key's tenant settings a while).
    _, key = await create_api_key(db, admin.tenant_id, role="developer")  # type: ignore[arg-type]
    topic = unique("land")
    async with await _client(platform, key) as client:
        assert (await ask(client, question(topic), headers={})).headers["x-ayush-cache"] == "miss"
        strict = {"X-Ayush-Cache": "semantic", "X-Ayush-Cache-Threshold": "0.99"}
        assert (await ask(client, reworded(topic), strict)).headers["x-ayush-cache"] == "miss"
        hit = await ask(client, f"tell me what the capital of {topic} is please", headers={})
        assert hit.headers["x-ayush-cache"] == "semantic-hit"
        with pytest.raises(openai.BadRequestError):
            await ask(client, reworded(topic), {**strict, "X-Ayush-Cache-Threshold": "2"})


# The store ------------------------------------------------------------------------------
EMBEDDER = HashingEmbedder(384)


async def _entry(tenant: uuid.UUID, text_: str, user_id: str | None = None) -> Entry:
    [vector] = await EMBEDDER.embed([text_])
    return Entry(tenant, "p", EMBEDDER.model, vector, user_id)


async def test_the_size_bound_evicts_the_oldest(db: Database) -> None:
    store = SemanticCacheStore(db)
    tenant = uuid.uuid4()
    texts = [question(unique("land")) for _ in range(3)]
    for text_ in texts:
        await store.put(await _entry(tenant, text_), {"q": text_}, 10, 60, max_entries=2)
    found = [await store.nearest(await _entry(tenant, t), 0.99) for t in texts]
    assert found[0] is None
    assert [f.answer["q"] if f else None for f in found[1:]] == texts[1:]


async def test_a_row_past_its_ttl_is_not_found_and_goes_on_the_next_write(db: Database) -> None:
    store = SemanticCacheStore(db)
    tenant = uuid.uuid4()
    old, new = question(unique("land")), question(unique("land"))
    await store.put(await _entry(tenant, old), {"q": old}, 10, 60, max_entries=10)
    assert await store.nearest(await _entry(tenant, old), 0.99) is not None
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE semantic_cache SET expires_at = now() WHERE tenant_id = :t"),
            {"t": tenant},
        )
    assert await store.nearest(await _entry(tenant, old), 0.5) is None
    await store.put(await _entry(tenant, new), {"q": new}, 10, 60, max_entries=10)
    async with db.session() as session:
        rows = (
            await session.execute(
                text("SELECT count(*) FROM semantic_cache WHERE tenant_id = :t"), {"t": tenant}
            )
        ).scalar_one()
    assert rows == 1


async def test_forgetting_a_user_deletes_the_answers_to_their_jobs(db: Database) -> None:
    store = SemanticCacheStore(db)
    tenant = (await make_tenant(db)).tenant_id
    assert isinstance(tenant, uuid.UUID)
    mine, theirs = question(unique("land")), question(unique("land"))
    await store.put(await _entry(tenant, mine, "ann"), {"q": mine}, 1, 60, 10)
    await store.put(await _entry(tenant, theirs, "bob"), {"q": theirs}, 1, 60, 10)
    erased = await erase_user(db, tenant, "ann", uuid.uuid4())
    assert erased["semantic_cache"] == 1
    assert await store.nearest(await _entry(tenant, mine), 0.99) is None
    assert await store.nearest(await _entry(tenant, theirs), 0.99) is not None


# The partition key ------------------------------------------------------------------------
def _job(*turns: tuple[str, str], **fields: Any) -> ChatJob:
    messages = [{"role": role, "content": content} for role, content in turns]
    return ChatJob(model="gpt-fake", messages=messages, semantic_cache=True, **fields)


def key_of(job: ChatJob, model: str) -> str:
    return semantic.partition_key(job, model)


def test_what_must_match_exactly_is_in_the_partition_key() -> None:
    base = _job(("system", "be brief"), ("user", "convert 5 km to miles"))
    key = key_of(base, "gpt-fake")
    # The wording of the last turn, labels and the user are not.
    reworded_ = _job(("system", "be brief"), ("user", "5 km in miles?"))
    assert key_of(reworded_, "gpt-fake") == key
    assert key_of(base.model_copy(update={"user_id": "ann"}), "gpt-fake") == key
    # The numbers, the history, the system prompt, the model and the parameters are.
    others = [
        key_of(_job(("system", "be brief"), ("user", "convert 8 km to miles")), "gpt-fake"),
        key_of(_job(("system", "be long"), ("user", "convert 5 km to miles")), "gpt-fake"),
        key_of(
            _job(("user", "hi"), ("assistant", "hello"), ("user", "convert 5 km to miles")),
            "gpt-fake",
        ),
        key_of(base, "gpt-other"),
        key_of(base.model_copy(update={"seed": 7}), "gpt-fake"),
        key_of(base.model_copy(update={"stop": ["\n"]}), "gpt-fake"),
    ]
    assert key not in others and len(set(others)) == len(others)
    assert semantic.question(base) == "convert 5 km to miles"
    # Memory recall, or a last turn that is not a user's text: not cached at all.
    assert semantic.question(base.model_copy(update={"memory": {"user_id": "ann"}})) is None
    assert semantic.question(_job(("user", "hi"), ("assistant", "hello"))) is None
