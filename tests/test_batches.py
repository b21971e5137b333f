"""The OpenAI Batch API through the official SDK, end to end on real Kafka, Postgres, Redis."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from websockets.asyncio.client import connect

from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from schemas import topics
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually, sse_events, unique
from tests.kafka_tools import read_topic
from tests.sign_in import user_headers

LANE = 16


@pytest.fixture(scope="module")
def batch_stack(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, Settings]]:
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("batch-logs"))
    platform.env.update(
        AYUSH_DATA_DIR=str(tmp_path_factory.mktemp("batch-data")),
        AYUSH_LOCAL_ECHO_DELAY_S="0",
        AYUSH_BATCH_LANE_CONCURRENCY=str(LANE),
        AYUSH_BATCH_EXPIRY_CHECK_S="0.5",
    )
    with platform.serving("model-calls", "model-calls-batch", "batch"):
        yield platform, settings


@pytest.fixture(scope="module")
def batch_platform(batch_stack: tuple[Platform, Settings]) -> Platform:
    return batch_stack[0]


@pytest.fixture
async def sdk(
    batch_platform: Platform, db: Any
) -> AsyncIterator[tuple[openai.AsyncOpenAI, TenantKey]]:
    tenant = await make_tenant(db)
    client = openai.AsyncOpenAI(base_url=f"{batch_platform.url}/v1", api_key=tenant.key,
                                max_retries=0, timeout=30)  # fmt: skip
    yield client, tenant
    await client.close()


def line(custom_id: str, content: str, model: str = "local-echo") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    }


def jsonl(items: list[Any]) -> bytes:
    return b"".join(
        (item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in items
    )


async def submit(client: openai.AsyncOpenAI, items: list[Any]) -> str:
    uploaded = await client.files.create(file=("input.jsonl", jsonl(items)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(items))
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating" and batch.input_file_id == uploaded.id
    return batch.id


async def wait_status(
    client: openai.AsyncOpenAI, batch_id: str, statuses: tuple[str, ...], timeout_s: float = 90
) -> Any:
    async def probe() -> Any:
        batch = await client.batches.retrieve(batch_id)
        return batch if batch.status in statuses else None

    return await eventually(probe, timeout_s, f"batch {batch_id} to be {statuses}")


async def read_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(raw) for raw in content.text.splitlines() if raw]


@pytest.mark.timeout(600)
async def test_thousand_lines_complete_with_every_custom_id_once(
    sdk: tuple[openai.AsyncOpenAI, TenantKey], batch_platform: Platform
) -> None:
    client, tenant = sdk
    items = [line(f"req-{i}", f"hello number {i}") for i in range(1000)]
    for i in (10, 500, 999):  # refused by the (fake) vendor: these go to the error file
        items[i] = line(f"req-{i}", f"bad {i}", model="gpt-fake@always=400")
    batch_id = await submit(client, items)

    batch = await wait_status(client, batch_id, ("completed", "failed"), timeout_s=560)
    assert batch.status == "completed", batch.errors
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (1000, 997, 3)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at

    output = await read_lines(client, batch.output_file_id)
    errors = await read_lines(client, batch.error_file_id)
    seen = Counter(item["custom_id"] for item in output + errors)
    assert seen == Counter(f"req-{i}" for i in range(1000))
    assert {item["custom_id"] for item in errors} == {"req-10", "req-500", "req-999"}
    by_id = {item["custom_id"]: item for item in output}
    sample = by_id["req-7"]["response"]
    assert sample["status_code"] == 200
    assert sample["body"]["object"] == "chat.completion"
    assert sample["body"]["choices"][0]["message"]["content"] == "hello number 7"
    assert sample["body"]["usage"]["completion_tokens"] == 3

    async with httpx.AsyncClient(base_url=batch_platform.url, timeout=30) as http:
        response = await http.get(f"/v1/batches/{batch_id}/events", headers=tenant.headers)
    events = sse_events(response.text)
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "completed"
    # Counted a poll at a time: fewer updates than lines, never going back.
    progress = [e["data"]["request_counts"] for e in events if e["event"] == "progress"]
    assert 1 <= len(progress) < 1000 and progress[-1]["completed"] == 997
    done = [p["completed"] + p["failed"] for p in progress]
    assert done == sorted(done)


async def test_unpriced_model_line_is_refused(sdk: tuple[openai.AsyncOpenAI, TenantKey]) -> None:
    """A batch line is billed like a request: a model without a price refuses the file."""
    client, _ = sdk
    unpriced = f"gpt-unpriced-{uuid.uuid4().hex[:8]}"
    items = [line("a", "fine"), line("b", "not free", model=unpriced), line("c", "fine")]
    batch = await wait_status(client, await submit(client, items), ("failed", "completed"))
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data
    [error] = batch.errors.data
    assert (error.line, error.code, error.param) == (2, "model_not_priced", "body.model")
    assert error.message is not None and unpriced in error.message


async def test_batch_stream_resume_checks_the_id_and_ends_after_done(
    sdk: tuple[openai.AsyncOpenAI, TenantKey], batch_platform: Platform
) -> None:
    client, tenant = sdk
    batch_id = await submit(client, [line("one", "a"), line("two", "b")])
    assert (await wait_status(client, batch_id, ("completed", "failed"))).status == "completed"
    url = f"/v1/batches/{batch_id}/events"
    async with httpx.AsyncClient(base_url=batch_platform.url, timeout=5) as http:
        events = sse_events((await http.get(url, headers=tenant.headers)).text)
        assert events[-1]["event"] == "done"
        after_done = await http.get(
            url, headers={**tenant.headers, "Last-Event-ID": events[-1]["id"]}
        )
        assert after_done.status_code == 200 and sse_events(after_done.text) == []
        unknown = await http.get(url, headers={**tenant.headers, "Last-Event-ID": "nope"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "Last-Event-ID"


async def test_a_users_batch_tells_the_users_feed_its_progress(
    batch_platform: Platform, db: Any
) -> None:
    owner = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=batch_platform.url, timeout=30) as http:
        token = (await user_headers(http, owner, unique("person-")))["Authorization"].split()[1]
    client = openai.AsyncOpenAI(base_url=f"{batch_platform.url}/v1", api_key=token,
                                max_retries=0, timeout=30)  # fmt: skip
    url = batch_platform.url.replace("http://", "ws://") + f"/v1/ws?token={token}"
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "user"}))
        assert json.loads(await ws.recv()) == {"type": "subscribed", "channel": "user"}
        batch_id = await submit(client, [line("one", "a"), line("two", "b")])
        progress: list[dict[str, Any]] = []
        while not progress or progress[-1]["status"] not in ("completed", "failed"):
            async with asyncio.timeout(90):
                message = json.loads(await ws.recv())
            if message["type"] == "event":
                assert message["event"] == "batch.progress", message
                progress.append(message["data"])
    await client.close()
    assert {p["batch_id"] for p in progress} == {batch_id}
    assert progress[-1] == {
        "batch_id": batch_id,
        "status": "completed",
        "request_counts": {"total": 2, "completed": 2, "failed": 0},
    }


async def test_bad_files_are_refused_with_line_numbers(
    sdk: tuple[openai.AsyncOpenAI, TenantKey],
) -> None:
    client, _ = sdk
    items: list[Any] = [
        line("a", "fine"),
        b"{not json",
        line("b", "fine"),
        line("a", "duplicate id"),
        {**line("c", "wrong url"), "url": "/v1/embeddings"},
        line("d", "unknown model", model="no-such-model"),
        {"custom_id": "e", "method": "POST", "url": "/v1/chat/completions", "body": {}},
    ]
    batch_id = await submit(client, items)
    batch = await wait_status(client, batch_id, ("failed", "completed"))
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data
    by_line = {e.line: e.code for e in batch.errors.data}
    assert by_line == {
        2: "invalid_json_line",
        4: "duplicate_custom_id",
        5: "mismatched_endpoint",
        6: "model_not_found",
        7: "invalid_request",
    }
    assert batch.output_file_id is None and batch.failed_at
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(batch_id)

    with pytest.raises(openai.BadRequestError):
        await client.batches.create(
            input_file_id=batch.input_file_id, endpoint="/v1/nope", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError) as missing:
        await client.batches.retrieve("batch_" + "0" * 32)
    assert missing.value.status_code == 404


async def test_finished_and_refused_batches_are_announced_once_as_batch_completed(
    sdk: tuple[openai.AsyncOpenAI, TenantKey], batch_stack: tuple[Platform, Settings]
) -> None:
    """What outbound webhooks deliver as `batch.completed`: one event a batch, whatever
    its final status, naming the files to fetch."""
    client, tenant = sdk
    _, settings = batch_stack
    done_id = await submit(client, [line("a", "one"), line("b", "two")])
    refused_id = await submit(client, [b"{not json"])
    done = await wait_status(client, done_id, ("completed", "failed"))
    await wait_status(client, refused_id, ("failed", "completed"))

    async def announced() -> dict[str, list[dict[str, Any]]] | None:
        found: dict[str, list[dict[str, Any]]] = {done_id: [], refused_id: []}
        for record in await read_topic(settings, topics.BATCH_EVENTS.name):
            event = json.loads(record.value or b"{}")
            batch = event.get("payload", {}).get("batch_id")
            if batch in found:
                found[batch].append(event)
        return found if all(found.values()) else None

    found = await eventually(announced, 30, "batch.completed events")
    (completed,) = {e["id"]: e for e in found[done_id]}.values()
    assert completed["type"] == "batch.completed"
    assert completed["tenant_id"] == str(tenant.tenant_id)
    assert completed["payload"]["status"] == "completed" == done.status
    assert completed["payload"]["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert completed["payload"]["output_file_id"] == done.output_file_id
    (refused,) = {e["id"]: e for e in found[refused_id]}.values()
    assert refused["payload"]["status"] == "failed"
    assert refused["payload"]["output_file_id"] is None


@pytest.mark.timeout(300)
async def test_list_pages_newest_first(sdk: tuple[openai.AsyncOpenAI, TenantKey]) -> None:
    client, _ = sdk
    ids = [await submit(client, [line(unique("x"), "hi")]) for _ in range(3)]
    first = await client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    rest = await client.batches.list(limit=2, after=first.data[-1].id)
    assert [b.id for b in rest.data] == ids[:1] and not rest.has_more
    for batch_id in ids:
        await wait_status(client, batch_id, ("completed",), timeout_s=250)


@pytest.mark.timeout(300)
async def test_cancel_mid_way_lists_every_line_once(
    sdk: tuple[openai.AsyncOpenAI, TenantKey],
) -> None:
    client, _ = sdk
    model = "gpt-fake@delay=150"
    items = [line(f"c-{i}", unique("slow"), model=model) for i in range(400)]
    batch_id = await submit(client, items)

    async def some_done() -> bool:
        batch = await client.batches.retrieve(batch_id)
        return bool(batch.request_counts and batch.request_counts.completed >= 5)

    await eventually(some_done, 60, "a few lines to complete")
    cancelling = await client.batches.cancel(batch_id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = await wait_status(client, batch_id, ("cancelled",), timeout_s=200)
    assert batch.cancelled_at and batch.request_counts is not None
    assert 5 <= batch.request_counts.completed < 400

    output = await read_lines(client, batch.output_file_id)
    errors = await read_lines(client, batch.error_file_id)
    assert Counter(i["custom_id"] for i in output + errors) == Counter(f"c-{i}" for i in range(400))
    assert len(output) == batch.request_counts.completed
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    again = await client.batches.cancel(batch_id)
    assert again.status == "cancelled"


@pytest.mark.timeout(400)
async def test_killed_workers_resume_without_redoing_finished_lines(
    sdk: tuple[openai.AsyncOpenAI, TenantKey], batch_platform: Platform, fake_llm: FakeLLMServer
) -> None:
    client, _ = sdk
    tag = unique("crash")
    items = [line(f"k-{i}", f"{tag} {i}", model="gpt-fake@delay=40") for i in range(300)]
    batch_id = await submit(client, items)

    async def some_done() -> bool:
        batch = await client.batches.retrieve(batch_id)
        return bool(batch.request_counts and batch.request_counts.completed >= 40)

    await eventually(some_done, 60, "some lines to complete")
    victims = [
        p for p in batch_platform.procs if p.name in ("model-calls-batch", "batch") and p.alive()
    ]
    assert len(victims) == 2
    for proc in victims:
        proc.kill()  # SIGKILL: no drain, no commit
    before = (await client.batches.retrieve(batch_id)).request_counts
    assert before is not None and before.completed < 300
    batch_platform.start_worker("model-calls-batch")
    batch_platform.start_worker("batch")

    batch = await wait_status(client, batch_id, ("completed",), timeout_s=300)
    assert batch.request_counts is not None and batch.request_counts.completed == 300
    output = await read_lines(client, batch.output_file_id)
    assert Counter(i["custom_id"] for i in output) == Counter(f"k-{i}" for i in range(300))
    calls = Counter(c.last_user for c in fake_llm.calls if c.last_user.startswith(tag))
    assert set(calls) == {f"{tag} {i}" for i in range(300)}
    # Only the calls in flight at the kill may run twice, never the finished lines.
    assert sum(n - 1 for n in calls.values()) <= LANE


@pytest.mark.timeout(300)
async def test_lines_carry_tools_tool_choice_and_stop_like_the_gateway(
    sdk: tuple[openai.AsyncOpenAI, TenantKey], fake_llm: FakeLLMServer
) -> None:
    client, _ = sdk
    tag = unique("tools")
    lookup = {"type": "function", "function": {
        "name": "lookup", "description": "finds things",
        "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
    }}  # fmt: skip
    with_tools = line("t-1", f"{tag} a", model="gpt-fake@tool")
    with_tools["body"].update(
        tools=[lookup], tool_choice={"type": "function", "function": {"name": "lookup"}}
    )
    with_stop = line("t-2", f"{tag} b", model="gpt-fake")
    with_stop["body"].update(stop="END", max_completion_tokens=50, metadata={"team": "x"})
    batch_id = await submit(client, [with_tools, with_stop])
    batch = await wait_status(client, batch_id, ("completed", "failed"))
    assert batch.status == "completed" and batch.error_file_id is None, batch.errors

    output = {i["custom_id"]: i for i in await read_lines(client, batch.output_file_id)}
    choice = output["t-1"]["response"]["body"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"echo": f"{tag} a"}
    assert output["t-2"]["response"]["body"]["choices"][0]["message"]["content"]

    sent = {c.last_user: c.body for c in fake_llm.calls if c.last_user.startswith(tag)}
    assert sent[f"{tag} a"]["tools"][0]["function"]["name"] == "lookup"
    assert sent[f"{tag} a"]["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert sent[f"{tag} b"]["stop"] == ["END"] and sent[f"{tag} b"]["max_tokens"] == 50


@pytest.mark.timeout(300)
async def test_lines_beyond_the_budget_fail_with_budget_exceeded(
    batch_platform: Platform, db: Any
) -> None:
    tenant = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=batch_platform.url, timeout=30) as http:
        put = await http.put(
            "/v1/budgets/tenant", json={"monthly_usd": "0.005"}, headers=tenant.headers
        )
        assert put.status_code == 200, put.text
    # gpt-fake costs $2 per million output tokens: each line reserves about $0.002.
    items = [line(f"b-{i}", f"hi {i}", model="gpt-fake") for i in range(5)]
    for item in items:
        item["body"]["max_tokens"] = 1000
    client = openai.AsyncOpenAI(base_url=f"{batch_platform.url}/v1", api_key=tenant.key,
                                max_retries=0, timeout=30)  # fmt: skip
    try:
        batch_id = await submit(client, items)
        batch = await wait_status(client, batch_id, ("completed", "failed"))
        assert batch.status == "completed" and batch.request_counts is not None
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (5, 2, 3)
        output = await read_lines(client, batch.output_file_id)
        errors = await read_lines(client, batch.error_file_id)
    finally:
        await client.close()
    assert sorted(i["custom_id"] for i in output) == ["b-0", "b-1"]
    assert sorted(e["custom_id"] for e in errors) == ["b-2", "b-3", "b-4"]
    assert {e["error"]["code"] for e in errors} == {"budget_exceeded"}
    assert all("tenant's monthly budget is spent" in e["error"]["message"] for e in errors)


@pytest.mark.timeout(300)
async def test_lines_beyond_their_users_budget_fail_and_other_users_lines_run(
    batch_platform: Platform, db: Any
) -> None:
    tenant = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=batch_platform.url, timeout=30) as http:
        put = await http.put(
            "/v1/budgets/users/default", json={"monthly_usd": "0.005"}, headers=tenant.headers
        )
        assert put.status_code == 200, put.text
    # gpt-fake costs $2 per million output tokens: each line reserves about $0.002.
    items = [line(f"u-{i}", f"hi {i}", model="gpt-fake") for i in range(5)]
    for i, item in enumerate(items):
        item["body"]["max_tokens"] = 1000
        item["body"]["user"] = "ann" if i < 4 else "bob"
    client = openai.AsyncOpenAI(base_url=f"{batch_platform.url}/v1", api_key=tenant.key,
                                max_retries=0, timeout=30)  # fmt: skip
    try:
        batch_id = await submit(client, items)
        batch = await wait_status(client, batch_id, ("completed", "failed"))
        assert batch.status == "completed" and batch.request_counts is not None
        errors = await read_lines(client, batch.error_file_id)
        output = await read_lines(client, batch.output_file_id)
    finally:
        await client.close()
    assert sorted(i["custom_id"] for i in output) == ["u-0", "u-1", "u-4"]
    assert sorted(e["custom_id"] for e in errors) == ["u-2", "u-3"]
    assert all("user 'ann''s monthly budget is spent" in e["error"]["message"] for e in errors)


@pytest.mark.timeout(300)
async def test_a_lines_tool_schemas_count_against_the_budget(
    batch_platform: Platform, db: Any
) -> None:
    """A line is admitted by everything it sends, as an interactive request is."""
    tenant = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=batch_platform.url, timeout=30) as http:
        put = await http.put(
            "/v1/budgets/tenant", json={"monthly_usd": "0.05"}, headers=tenant.headers
        )
        assert put.status_code == 200, put.text
    # A megabyte of schema: about 250,000 tokens, $0.25 at gpt-fake's $1 per 1M in.
    schema = {"type": "object", "properties": {"x": {"description": "fill me in " * 90_000}}}
    heavy, light = line("heavy", "hi", model="gpt-fake"), line("light", "hi", model="gpt-fake")
    heavy["body"]["tools"] = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    for item in (heavy, light):
        item["body"]["max_tokens"] = 1
    client = openai.AsyncOpenAI(base_url=f"{batch_platform.url}/v1", api_key=tenant.key,
                                max_retries=0, timeout=30)  # fmt: skip
    try:
        batch = await wait_status(client, await submit(client, [heavy, light]), ("completed",))
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
        errors = await read_lines(client, batch.error_file_id)
    finally:
        await client.close()
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [("heavy", "budget_exceeded")]


@pytest.mark.timeout(300)
async def test_unfinished_lines_expire_with_the_window(batch_platform: Platform, db: Any) -> None:
    # An ingress whose batches get an 8 s window instead of 24 h; the workers
    # look for expired batches every half second.
    shared_url = batch_platform.url
    short = batch_platform.start_ingress_with({"AYUSH_BATCH_COMPLETION_WINDOW_S": "8"})
    short_url, batch_platform.url = batch_platform.url, shared_url
    tenant = await make_tenant(db)
    client = openai.AsyncOpenAI(base_url=f"{short_url}/v1", api_key=tenant.key,
                                max_retries=0, timeout=30)  # fmt: skip
    try:
        items = [line(f"e-{i}", unique("late"), model="gpt-fake@delay=400") for i in range(400)]
        batch_id = await submit(client, items)
        batch = await wait_status(client, batch_id, ("expired", "completed"), timeout_s=120)
    finally:
        await client.close()
        short.terminate()
    assert batch.status == "expired"
    assert batch.expires_at == batch.created_at + 8 and batch.expired_at
    assert batch.expired_at >= batch.expires_at
    counts = batch.request_counts
    assert counts is not None and counts.total == 400 and 0 < counts.completed < 400

    client = openai.AsyncOpenAI(base_url=f"{shared_url}/v1", api_key=tenant.key, max_retries=0)
    output = await read_lines(client, batch.output_file_id)
    errors = await read_lines(client, batch.error_file_id)
    await client.close()
    assert Counter(i["custom_id"] for i in output + errors) == Counter(f"e-{i}" for i in range(400))
    assert len(output) == counts.completed
    assert all(i["response"]["status_code"] == 200 for i in output)
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ayush.cli", "batch", "submit", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.timeout(300)
async def test_cli_submits_follows_and_downloads(
    sdk: tuple[openai.AsyncOpenAI, TenantKey], batch_platform: Platform, tmp_path: Path
) -> None:
    _, tenant = sdk
    source = tmp_path / "prompts.jsonl"
    rows = [{"custom_id": f"p{i}", "body": {"messages": [{"role": "user", "content": f"hi {i}"}]}}
            for i in range(20)]  # fmt: skip
    source.write_bytes(jsonl(rows))
    common = ("--url", batch_platform.url, "--api-key", tenant.key)

    code, out, err = await _cli(str(source), "--model", "local-echo", *common)
    assert code == 0, err
    output = tmp_path / "prompts.output.jsonl"
    assert f"output: {output}" in out
    results = [json.loads(raw) for raw in output.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in results) == sorted(f"p{i}" for i in range(20))

    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(jsonl([*rows[:2], b"{oops"]))
    code, _, err = await _cli(str(broken), "--model", "local-echo", *common)
    assert code == 1 and "line 3" in err

    code, _, err = await _cli(str(source), "--model", "no-such-model", *common)
    assert code == 1 and "line 1" in err and "refused" in err
