"""The Responses API, driven by the official `openai` SDK end to end.

A real ingress and model-calls worker, real Kafka/Postgres/Redis; the model vendors are
the fake servers of tests/fakes/llm.py, whose recorded calls show what each turn sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from infra.db.conversation_models import Conversation
from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from schemas.conversations import conversation_wire_id
from tests.conftest import Running, TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic


@pytest.fixture
async def tenant_key(db: Database) -> TenantKey:
    return await make_tenant(db)


@pytest.fixture
async def oai(running: Running, tenant_key: TenantKey) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{running.url}/v1", api_key=tenant_key.key, max_retries=0, timeout=30
    ) as client:
        yield client


def sent_roles_and_texts(body: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for m in body["messages"]:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content)
        out.append((m["role"], content or ""))
    return out


def decoded(records: list[Any]) -> Iterator[tuple[Any, Any]]:
    """The records and their events, past any that is not one (another test's poison)."""
    for record in records:
        try:
            yield record, decode_raw(record.value)
        except ValueError:
            continue


def text_of(item: Any) -> str:
    return str(item.model_dump()["content"][0]["text"])


async def new_conversation(db: Database, tenant: TenantKey, user_id: str | None = None) -> str:
    conversation_id = uuid.uuid4()
    tenant_id = uuid.UUID(str(tenant.tenant_id))
    await db.add(Conversation(id=conversation_id, tenant_id=tenant_id, user_id=user_id))
    return conversation_wire_id(conversation_id)


async def test_three_turns_by_previous_response_id_send_the_whole_history(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    first_q, second_q, third_q = unique("one "), unique("two "), unique("three ")
    first = await oai.responses.create(model="gpt-fake", input=first_q, instructions="be brief")
    assert first.status == "completed"
    assert first.output_text == f"reply to: {first_q}"
    assert first.id.startswith("resp_")
    assert str(first.output[0].model_dump()["id"]).startswith("msg_")
    assert first.usage is not None and first.usage.total_tokens > 0
    assert first.completed_at is not None and first.completed_at >= first.created_at

    second = await oai.responses.create(
        model="gpt-fake", input=second_q, previous_response_id=first.id
    )
    third = await oai.responses.create(
        model="gpt-fake", input=[{"role": "user", "content": third_q}],
        previous_response_id=second.id,
    )  # fmt: skip
    assert third.previous_response_id == second.id
    assert third.output_text == f"reply to: {third_q}"

    [call] = fake_llm.calls_for(third_q)
    assert sent_roles_and_texts(call.body) == [
        ("user", first_q),
        ("assistant", f"reply to: {first_q}"),
        ("user", second_q),
        ("assistant", f"reply to: {second_q}"),
        ("user", third_q),
    ]
    # the instructions are the first turn's only (OpenAI does not carry them over)
    [first_call] = fake_llm.calls_for(first_q)
    assert sent_roles_and_texts(first_call.body)[0] == ("system", "be brief")

    again = await oai.responses.retrieve(second.id)
    assert again.status == "completed" and again.output_text == f"reply to: {second_q}"


async def test_three_turns_in_a_conversation_send_the_whole_history(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer, db: Database, tenant_key: TenantKey
) -> None:
    conversation = await new_conversation(db, tenant_key)
    questions = [unique("c1 "), unique("c2 "), unique("c3 ")]
    for q in questions:
        answer = await oai.responses.create(model="gpt-fake", input=q, conversation=conversation)
        assert answer.conversation is not None and answer.conversation.id == conversation
        assert answer.output_text == f"reply to: {q}"
    [call] = fake_llm.calls_for(questions[2])
    assert sent_roles_and_texts(call.body) == [
        ("user", questions[0]),
        ("assistant", f"reply to: {questions[0]}"),
        ("user", questions[1]),
        ("assistant", f"reply to: {questions[1]}"),
        ("user", questions[2]),
    ]


async def test_previous_response_id_with_conversation_is_refused(
    oai: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(
            model="gpt-fake", input="x", previous_response_id="resp_1", conversation="conv_1"
        )
    assert "previous_response_id" in caught.value.message


async def test_stream_events_come_in_order_numbered_without_gaps(
    oai: openai.AsyncOpenAI,
) -> None:
    question = unique("stream ")
    async with oai.responses.stream(model="gpt-fake", input=question) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "response.output_text.delta" in types
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == f"reply to: {question}"
    stored = await oai.responses.retrieve(final.id)
    assert stored.output[0].model_dump()["id"] == final.output[0].model_dump()["id"]


async def test_raw_stream_names_each_event(running: Running, tenant_key: TenantKey) -> None:
    body = {"model": "gpt-fake", "input": unique("raw "), "stream": True}
    async with (
        httpx.AsyncClient(base_url=running.url, timeout=30) as http,
        http.stream("POST", "/v1/responses", json=body, headers=tenant_key.headers) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        job_id = answer.headers["x-ayush-job-id"]
        text = "".join([chunk async for chunk in answer.aiter_text()])
    frames = [f for f in text.split("\n\n") if f.strip()]
    for frame in frames:
        event_line, data_line = frame.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
    last = json.loads(frames[-1].split("\n")[1].removeprefix("data: "))
    assert last["type"] == "response.completed"
    assert last["response"]["id"] == f"resp_{uuid.UUID(job_id).hex}"


async def test_background_response_resumes_from_starting_after_with_nothing_repeated(
    oai: openai.AsyncOpenAI,
) -> None:
    question = unique("background ")
    queued = await oai.responses.create(model="gpt-fake@pace=20", input=question, background=True)
    assert queued.status == "queued" and queued.background

    whole = [e async for e in await oai.responses.retrieve(queued.id, stream=True)]
    assert [e.sequence_number for e in whole] == list(range(len(whole)))
    assert whole[-1].type == "response.completed"
    cut = len(whole) // 2
    rest = [
        e
        async for e in await oai.responses.retrieve(
            queued.id, stream=True, starting_after=whole[cut].sequence_number
        )
    ]
    assert [e.model_dump() for e in rest] == [e.model_dump() for e in whole[cut + 1 :]]

    done = await oai.responses.retrieve(queued.id)
    assert done.status == "completed" and done.output_text == f"reply to: {question}"


async def test_claude_backed_response(oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer) -> None:
    question = unique("claude ")
    answer = await oai.responses.create(
        model="claude-fake", input=question, instructions="be kind", max_output_tokens=40
    )
    assert answer.output_text == f"reply to: {question}"
    [call] = fake_llm.calls_for(question)
    assert call.api == "anthropic" and call.body["system"] == "be kind"
    assert call.body["max_tokens"] == 40


async def test_function_call_then_its_output_reaches_the_model_as_a_tool_message(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    question = unique("weather ")
    tools: Any = [{
        "type": "function", "name": "lookup", "description": "Look a thing up",
        "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
    }]  # fmt: skip
    first = await oai.responses.create(model="gpt-fake@tool", input=question, tools=tools)
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "lookup" and json.loads(call.arguments) == {"echo": question}
    assert call.id is not None and call.id.startswith("fc_")

    second = await oai.responses.create(
        model="gpt-fake@tool",
        previous_response_id=first.id,
        tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.status == "completed"
    sent = fake_llm.calls[-1].body["messages"]
    assert sent[-2]["role"] == "assistant"
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


async def test_a_background_response_is_cancelled(oai: openai.AsyncOpenAI) -> None:
    queued = await oai.responses.create(
        model="gpt-fake@pace=200", input=unique("long ") + " ".join("w" * 40), background=True
    )
    cancelled = await oai.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    stored = await oai.responses.retrieve(queued.id)
    assert stored.status == "cancelled"


async def test_only_a_background_response_can_be_cancelled(oai: openai.AsyncOpenAI) -> None:
    done = await oai.responses.create(model="gpt-fake", input=unique("done "))
    with pytest.raises(openai.BadRequestError):
        await oai.responses.cancel(done.id)


async def test_a_deleted_response_is_gone_and_its_chain_refused(oai: openai.AsyncOpenAI) -> None:
    answer = await oai.responses.create(model="gpt-fake", input=unique("delete "))
    await oai.responses.delete(answer.id)
    with pytest.raises(openai.NotFoundError):
        await oai.responses.retrieve(answer.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.responses.create(model="gpt-fake", input="x", previous_response_id=answer.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_input_items_page_in_order(oai: openai.AsyncOpenAI) -> None:
    texts = [unique("a "), unique("b "), unique("c ")]
    answer = await oai.responses.create(
        model="gpt-fake", input=[{"role": "user", "content": t} for t in texts]
    )
    page = await oai.responses.input_items.list(answer.id, order="asc", limit=2)
    assert [text_of(i) for i in page.data] == texts[:2]
    assert page.has_more
    rest = await oai.responses.input_items.list(answer.id, order="asc", after=page.data[-1].id)
    assert [text_of(i) for i in rest.data] == texts[2:]
    newest = await oai.responses.input_items.list(answer.id)
    assert [text_of(i) for i in newest.data] == texts[::-1]


async def test_another_tenants_response_and_conversation_are_not_found(
    oai: openai.AsyncOpenAI, running: Running, db: Database
) -> None:
    other = await make_tenant(db)
    conversation = await new_conversation(db, other)
    async with openai.AsyncOpenAI(
        base_url=f"{running.url}/v1", api_key=other.key, max_retries=0, timeout=30
    ) as theirs:
        answer = await theirs.responses.create(model="gpt-fake", input=unique("theirs "))
    with pytest.raises(openai.NotFoundError):
        await oai.responses.retrieve(answer.id)
    with pytest.raises(openai.NotFoundError):
        await oai.responses.delete(answer.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.responses.create(model="gpt-fake", input="x", previous_response_id=answer.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.responses.create(model="gpt-fake", input="x", conversation=conversation)
    assert caught.value.body["param"] == "conversation"  # type: ignore[index]


async def test_an_unstored_response_cannot_be_read_or_continued(oai: openai.AsyncOpenAI) -> None:
    answer = await oai.responses.create(model="gpt-fake", input=unique("nostore "), store=False)
    assert answer.status == "completed" and answer.model_dump()["store"] is False
    with pytest.raises(openai.NotFoundError):
        await oai.responses.retrieve(answer.id)
    with pytest.raises(openai.NotFoundError):
        await oai.responses.create(model="gpt-fake", input="x", previous_response_id=answer.id)


async def test_a_tool_that_is_not_a_function_is_refused_naming_tools(
    oai: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(
            model="gpt-fake",
            input="x",
            tools=[{"type": "web_search"}],
        )
    assert caught.value.body["param"].startswith("tools")  # type: ignore[index]


async def test_a_failed_upstream_fails_the_response(oai: openai.AsyncOpenAI) -> None:
    queued = await oai.responses.create(
        model="gpt-fake@always=400", input=unique("fails "), background=True
    )

    async def ended() -> Any:
        found = await oai.responses.retrieve(queued.id)
        return found if found.status not in ("queued", "in_progress") else None

    found = await eventually(ended, 20, "the response to fail")
    assert found.status == "failed"
    assert found.error is not None and found.error.code == "invalid_prompt"


async def test_a_finished_turn_is_told_on_conversation_events_keyed_by_its_conversation(
    oai: openai.AsyncOpenAI, running: Running, db: Database, tenant_key: TenantKey
) -> None:
    conversation = await new_conversation(db, tenant_key)
    answer = await oai.responses.create(
        model="gpt-fake", input=unique("told "), conversation=conversation
    )
    response_id = uuid.UUID(answer.id.removeprefix("resp_"))

    async def finished() -> list[Any] | None:
        records = await read_topic(running.settings, "conversation.events")
        found = [
            (r.key, decode_raw(r.value))
            for r in records
            if decode_raw(r.value).payload.get("response_id") == str(response_id)
        ]
        return found or None

    [(key, event)] = await eventually(finished, 20, "response.finished")
    assert event.type == "response.finished"
    assert key == str(uuid.UUID(conversation.removeprefix("conv_"))).encode()
    assert event.payload["status"] == "completed"
    assert [o["id"] for o in event.payload["output"]] == [answer.output[0].model_dump()["id"]]


async def test_a_response_job_cannot_be_posted_as_a_job(
    running: Running, tenant_key: TenantKey, db: Database
) -> None:
    # A turn naming another user's conversation would read it into the model's prompt.
    conversation = await new_conversation(db, tenant_key, user_id="someone")
    turn = {
        "input": [],
        "conversation_id": conversation.removeprefix("conv_"),
    }
    body = {"kind": "response", "model": "gpt-fake", "response": turn}
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        answer = await http.post("/v1/jobs", json=body, headers=tenant_key.headers)
    assert answer.status_code == 422
    assert answer.json()["field"] == "kind"


async def test_a_streamed_response_replays_with_the_same_events(oai: openai.AsyncOpenAI) -> None:
    live = [e async for e in await oai.responses.create(
        model="gpt-fake@pace=10", input=unique("replay me "), stream=True
    )]  # fmt: skip
    assert live[-1].type == "response.completed"
    response_id = live[-1].response.id  # type: ignore[union-attr]
    again = [e async for e in await oai.responses.retrieve(response_id, stream=True)]
    assert [e.model_dump() for e in again] == [e.model_dump() for e in live]


async def test_a_background_response_is_cancelled_while_it_streams(
    oai: openai.AsyncOpenAI,
) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    queued = await oai.responses.create(
        model="gpt-fake@pace=100", input=unique("cut ") + words, background=True
    )
    stream = await oai.responses.retrieve(queued.id, stream=True)
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == "response.output_text.delta":
            cancelled = await oai.responses.cancel(queued.id)
            assert cancelled.status == "cancelled"
    assert seen[-1].type == "response.failed"
    assert seen[-1].response.status == "cancelled"  # type: ignore[union-attr]
    stored = await oai.responses.retrieve(queued.id)
    assert stored.status == "cancelled" and stored.output == []


async def test_text_format_and_sampling_reach_the_model(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    question = unique("json ")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    await oai.responses.create(
        model="gpt-fake",
        input=question,
        temperature=0.2,
        top_p=0.5,
        max_output_tokens=30,
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
        tool_choice="none",
    )
    [call] = fake_llm.calls_for(question)
    assert call.body["temperature"] == 0.2 and call.body["top_p"] == 0.5
    assert call.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


async def test_a_failed_call_answers_in_openais_shape_and_is_kept_failed(
    oai: openai.AsyncOpenAI, running: Running, tenant_key: TenantKey
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="gpt-fake@always=400", input=unique("bad "))
    job_id = caught.value.response.headers["x-ayush-job-id"]
    stored = await oai.responses.retrieve(f"resp_{uuid.UUID(job_id).hex}")
    assert stored.status == "failed"
    assert stored.error is not None and stored.error.code == "invalid_prompt"


async def test_a_background_response_must_be_stored(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await oai.responses.create(model="gpt-fake", input="x", background=True, store=False)


async def test_a_waited_response_says_its_cost(running: Running, tenant_key: TenantKey) -> None:
    body = {"model": "gpt-fake", "input": unique("cost ")}
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        answer = await http.post("/v1/responses", json=body, headers=tenant_key.headers)
    assert answer.status_code == 200
    assert float(answer.headers["x-ayush-cost-usd"]) > 0


async def test_a_response_is_a_job_to_read(running: Running, tenant_key: TenantKey) -> None:
    body = {"model": "gpt-fake", "input": unique("job ")}
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        answer = await http.post("/v1/responses", json=body, headers=tenant_key.headers)
        job = await http.get(
            f"/v1/jobs/{answer.headers['x-ayush-job-id']}", headers=tenant_key.headers
        )
    assert job.status_code == 200, job.text
    assert job.json()["status"] == "succeeded"
    assert job.json()["kind"] == "response"
    assert job.json()["result"] == answer.json()["output"][0]["content"][0]["text"]


async def test_deleting_a_response_keeps_its_conversations_items(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer, db: Database, tenant_key: TenantKey
) -> None:
    conversation = await new_conversation(db, tenant_key)
    first_q, second_q = unique("keep "), unique("after ")
    first = await oai.responses.create(model="gpt-fake", input=first_q, conversation=conversation)
    await oai.responses.delete(first.id)
    await oai.responses.create(model="gpt-fake", input=second_q, conversation=conversation)
    [call] = fake_llm.calls_for(second_q)
    assert sent_roles_and_texts(call.body) == [
        ("user", first_q),
        ("assistant", f"reply to: {first_q}"),
        ("user", second_q),
    ]


@pytest.fixture(scope="module")
def titling(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """An ingress and worker whose routing file names a title model."""
    folder = tmp_path_factory.mktemp("titles")
    routing = folder / "routing.toml"
    routing.write_text('[conversations]\ntitle_model = "gpt-fake"\n')
    platform, settings = new_platform(services, fake_llm, folder / "logs")
    platform.env["AYUSH_ROUTING_FILE"] = str(routing)
    with platform.serving("model-calls"):
        yield Running(platform, settings)


async def test_a_conversation_is_titled_after_its_first_turn(
    titling: Running, db: Database, tenant_key: TenantKey
) -> None:
    conversation = await new_conversation(db, tenant_key)
    conversation_id = uuid.UUID(conversation.removeprefix("conv_"))
    async with openai.AsyncOpenAI(
        base_url=f"{titling.url}/v1", api_key=tenant_key.key, max_retries=0, timeout=30
    ) as client:
        await client.responses.create(
            model="gpt-fake", input=unique("title me "), conversation=conversation
        )

    async def titled() -> str | None:
        found = await db.get(Conversation, conversation_id)
        return found.title if found is not None else None

    title = await eventually(titled, 20, "the conversation's title")
    assert title.startswith("reply to")


async def test_a_redelivered_turn_tells_its_end_again_with_the_same_id(
    oai: openai.AsyncOpenAI, running: Running, db: Database, tenant_key: TenantKey,
    fake_llm: FakeLLMServer,
) -> None:  # fmt: skip
    # The end goes out after the answer; a crash before it would lose it but for this.
    conversation = await new_conversation(db, tenant_key)
    text = unique("again ")
    answer = await oai.responses.create(model="gpt-fake", input=text, conversation=conversation)
    response_id = answer.id.removeprefix("resp_")
    [original] = [
        r
        for r, event in decoded(await read_topic(running.settings, "ai.job.requested"))
        if event.correlation_id.hex == response_id
    ]
    publisher = Publisher(running.settings)
    await publisher.start()
    try:
        await publisher.send(
            original.topic, original.value, key=original.key, headers=list(original.headers)
        )

        async def told_twice() -> list[Any] | None:
            ends = [
                event
                for _, event in decoded(await read_topic(running.settings, "conversation.events"))
                if event.payload.get("response_id") == str(uuid.UUID(response_id))
            ]
            return ends if len(ends) == 2 else None

        first, again = await eventually(told_twice, 20, "response.finished told again")
    finally:
        await publisher.stop()
    assert again.id == first.id and again.type == "response.finished"  # consumers drop it
    assert again.payload["output"] == first.payload["output"]
    assert again.payload["status"] == "completed"
    assert len(fake_llm.calls_for(text)) == 1  # the model was not called again
