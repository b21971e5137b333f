"""The tool loop: a chat job with `ayush_tools` lets the model run built-in tools (tasks)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text as sql

from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from schemas import topics
from schemas.jobs import BUILTIN_TOOL_NAMES
from tests.conftest import Running, TenantKey, make_tenant
from tests.fakes.llm import Call, FakeLLMServer, _text_of
from tests.harness import eventually, sse_events, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import submit, wait_finished

pytestmark = pytest.mark.timeout(180)

TASK_TOOLS = set(BUILTIN_TOOL_NAMES["tasks"])


def _job(
    plan: list[dict[str, Any]], user: str | None, model: str = "gpt-fake@plan", **extra: Any
) -> dict[str, Any]:
    question = unique("tool loop ")
    body: dict[str, Any] = {
        "kind": "chat",
        "model": model,
        "messages": [{"role": "user", "content": f"{question}\nplan: {json.dumps(plan)}"}],
        **extra,
    }
    if user is not None:
        body["user_id"] = user
    return body


def _calls(fake: FakeLLMServer, body: dict[str, Any]) -> list[Call]:
    content = body["messages"][0]["content"]
    return [c for c in fake.calls if c.last_user == content]


async def _events(
    client: httpx.AsyncClient, tenant: TenantKey, job_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)
    return sse_events(response.text)


async def _tasks(client: httpx.AsyncClient, tenant: TenantKey, user: str) -> list[dict[str, Any]]:
    listed = await client.get("/v1/tasks", params={"user_id": user}, headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"])


def _tokens(call: Call) -> tuple[int, int]:
    """The usage the fake reports for one call (its prompt's words, its reply's words)."""
    prompt = sum(len(str(m.get("content", "")).split()) for m in call.body["messages"])
    return prompt, len(f"reply to: {call.last_user}".split(" "))


async def test_model_runs_builtin_task_tools_in_sequence_then_answers(
    db: Database, client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    user = unique("ann-")
    title = unique("Buy milk ")
    plan = [
        {"name": "create_task", "arguments": {"title": title, "priority": 3}},
        {"name": "complete_task", "arguments": {"task_id": "$.task.id"}},
        {"name": "list_tasks", "arguments": {"status": "done"}},
    ]
    body = _job(plan, user, ayush_tools=["tasks"])
    job_id = await submit(client, admin, body)
    job = await wait_finished(client, admin, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"].startswith("reply to: ")

    calls = _calls(fake_llm, body)
    assert len(calls) == 4  # three tool steps, then the answer
    offered = {t["function"]["name"] for t in calls[0].body["tools"]}
    assert offered == TASK_TOOLS
    # Each call after a step carries that step's result as a tool message.
    results = [json.loads(m["content"]) for m in calls[-1].body["messages"] if m["role"] == "tool"]
    created, completed, listed = results
    assert created["task"]["title"] == title and created["task"]["status"] == "open"
    assert completed["task"]["id"] == created["task"]["id"]
    assert completed["task"]["status"] == "done"
    assert [t["id"] for t in listed["tasks"]] == [created["task"]["id"]]
    # Usage counts every model call's tokens.
    spent = [_tokens(c) for c in calls]
    assert job["usage"] == {
        "input_tokens": sum(p for p, _ in spent),
        "output_tokens": sum(o for _, o in spent),
    }

    steps = [e["data"] for e in await _events(client, admin, job_id) if e["event"] == "tool"]
    assert [(s["step"], s["name"], s["ok"]) for s in steps] == [
        (1, "create_task", True),
        (2, "complete_task", True),
        (3, "list_tasks", True),
    ]
    assert steps[0]["summary"] == {"task_id": created["task"]["id"]}

    # The task is the user's, done, over the tasks API.
    [task] = await _tasks(client, admin, user)
    assert (task["id"], task["title"], task["status"], task["priority"]) == (
        created["task"]["id"],
        title,
        "done",
        3,
    )
    assert await _tasks(client, admin, unique("bob-")) == []


async def test_step_limit_ends_a_model_that_never_stops(
    db: Database, client: httpx.AsyncClient, running: Running, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    plan = [{"name": "list_tasks", "arguments": {}}]
    body = _job(plan, unique("ann-"), model="gpt-fake@plan@forever", ayush_tools=["tasks"])
    job_id = await submit(client, admin, body)
    job = await wait_finished(client, admin, job_id)
    assert job["status"] == "failed", job
    assert "AYUSH_TOOL_STEP_LIMIT" in job["error"]
    calls = _calls(fake_llm, body)
    assert len(calls) == 8  # AYUSH_TOOL_STEP_LIMIT's default
    events = await _events(client, admin, job_id)
    [error] = [e["data"] for e in events if e["event"] == "error"]
    assert error["code"] == "tool_step_limit"
    assert len([e for e in events if e["event"] == "tool"]) == 7
    # The calls were made: the failed job is billed for all eight.
    [usage] = [
        decode_raw(r.value).payload
        for r in await read_topic(running.settings, topics.USAGE_RECORDED.name)
        if str(decode_raw(r.value).correlation_id) == job_id
    ]
    spent = [_tokens(c) for c in calls]
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        sum(p for p, _ in spent),
        sum(o for _, o in spent),
    )


async def test_anthropic_model_runs_builtin_task_tools(
    db: Database, client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    user = unique("ann-")
    plan = [
        {"name": "create_task", "arguments": {"title": "call mum"}},
        {"name": "complete_task", "arguments": {"task_id": "$.task.id"}},
    ]
    body = _job(plan, user, model="claude-fake@plan", ayush_tools=["tasks"])
    job = await wait_finished(client, admin, await submit(client, admin, body))
    assert job["status"] == "succeeded", job
    first = body["messages"][0]["content"]
    calls = [
        c
        for c in fake_llm.calls
        if c.body.get("messages") and _text_of(c.body["messages"][0]["content"]) == first
    ]
    assert len(calls) == 3
    [task] = await _tasks(client, admin, user)
    assert (task["title"], task["status"]) == ("call mum", "done")


async def test_request_without_the_flag_offers_no_builtin_tools(
    db: Database, client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    user = unique("ann-")
    body = _job([{"name": "create_task", "arguments": {"title": "x"}}], user)
    job = await wait_finished(client, admin, await submit(client, admin, body))
    assert job["status"] == "succeeded", job
    [call] = _calls(fake_llm, body)
    assert "tools" not in call.body
    assert await _tasks(client, admin, user) == []


async def test_client_tools_go_back_to_the_caller_beside_builtin_ones(
    db: Database, client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    lookup = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    plan = [{"name": "lookup", "arguments": {"q": "weather"}}]
    body = _job(plan, unique("ann-"), ayush_tools=["tasks"], tools=[lookup])
    job_id = await submit(client, admin, body)
    job = await wait_finished(client, admin, job_id)
    assert job["status"] == "succeeded", job
    assert job["finish_reason"] == "tool_calls"
    [call] = _calls(fake_llm, body)
    assert {t["function"]["name"] for t in call.body["tools"]} == TASK_TOOLS | {"lookup"}
    [result] = [e["data"] for e in await _events(client, admin, job_id) if e["event"] == "result"]
    assert result["tool_calls"] == [
        {"id": "call_1", "name": "lookup", "arguments": '{"q": "weather"}'}
    ]


async def test_builtin_tools_need_a_user_and_a_known_name(
    db: Database, client: httpx.AsyncClient
) -> None:
    admin = await make_tenant(db, admin=True)
    no_user = await client.post(
        "/v1/jobs", json=_job([], None, ayush_tools=["tasks"]), headers=admin.headers
    )
    assert no_user.status_code == 422, no_user.text
    assert no_user.json()["details"][0]["field"] == "ayush_tools"
    unknown = await client.post(
        "/v1/jobs", json=_job([], "ann", ayush_tools=["files"]), headers=admin.headers
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["details"][0]["field"].startswith("ayush_tools")
    lookup = {"name": "create_task", "parameters": {}}
    clash = await client.post(
        "/v1/jobs",
        json=_job([], "ann", ayush_tools=["tasks"], tools=[lookup]),
        headers=admin.headers,
    )
    assert clash.status_code == 422, clash.text
    assert clash.json()["details"][0]["field"] == "ayush_tools"
    completions = await client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-fake",
            "messages": [{"role": "user", "content": "hi"}],
            "ayush_tools": ["tasks"],
        },
        headers=admin.headers,
    )
    assert completions.status_code in (400, 422), completions.text
    assert "ayush_tools" in completions.text


async def test_redelivered_job_does_not_create_a_second_task(
    db: Database, client: httpx.AsyncClient, running: Running, fake_llm: FakeLLMServer
) -> None:
    admin = await make_tenant(db, admin=True)
    user = unique("ann-")
    plan = [{"name": "create_task", "arguments": {"title": "once"}}]
    body = _job(plan, user, ayush_tools=["tasks"])
    job_id = await submit(client, admin, body)
    assert (await wait_finished(client, admin, job_id))["status"] == "succeeded"
    [task] = await _tasks(client, admin, user)

    # A crash after the step, before the answer was stored: the job is running again, its
    # result and its event's claim gone, and its event is delivered again.
    [original] = [
        r
        for r in await read_topic(running.settings, topics.AI_JOB_REQUESTED.name)
        # Other tests' records share the topic, a poison one among them: look first.
        if r.value
        and job_id.encode() in r.value
        and str(decode_raw(r.value).correlation_id) == job_id
    ]
    event_id = decode_raw(original.value).id
    async with db.transaction() as session:
        await session.execute(
            sql("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = :id"),
            {"id": uuid.UUID(job_id)},
        )
        await session.execute(
            sql("DELETE FROM job_results WHERE job_id = :id"), {"id": uuid.UUID(job_id)}
        )
        await session.execute(
            sql("DELETE FROM processed_events WHERE event_id = :id"), {"id": event_id}
        )
    publisher = Publisher(running.settings)
    await publisher.start()
    try:
        await publisher.send(
            original.topic, original.value, key=original.key, headers=list(original.headers)
        )
    finally:
        await publisher.stop()

    async def answered_again() -> bool:
        return len(_calls(fake_llm, body)) == 4

    await eventually(answered_again, 30, "the redelivered job to run its steps again")
    assert (await wait_finished(client, admin, job_id))["status"] == "succeeded"
    assert [t["id"] for t in await _tasks(client, admin, user)] == [task["id"]]
