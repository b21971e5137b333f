"""The model-calls group: real SDKs against fake vendors, concurrency, idempotency, dead letters."""

from __future__ import annotations

import time
import uuid

import httpx

from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.jobs import ChatJob, ChatMessage, JobRequested
from tests.conftest import Running, TenantKey
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, sse_events, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import chat, submit, wait_finished


async def test_openai_provider_streams_through_the_real_sdk(
    client: httpx.AsyncClient, tenant: TenantKey, fake_llm: FakeLLMServer
) -> None:
    text = unique("openai ")
    job_id = await submit(client, tenant, chat(text, model="gpt-fake"))
    job = await wait_finished(client, tenant, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"] == f"reply to: {text}"
    assert job["provider"] == "openai"
    assert job["usage"] == {"input_tokens": 2, "output_tokens": 4}
    events = sse_events(
        (await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text
    )
    assert "".join(e["data"]["text"] for e in events if e["event"] == "delta") == job["result"]
    assert len(fake_llm.calls_for(text)) == 1


async def test_anthropic_provider_streams_through_the_real_sdk(
    client: httpx.AsyncClient, tenant: TenantKey, fake_llm: FakeLLMServer
) -> None:
    text = unique("anthropic ")
    body = {
        "kind": "chat",
        "model": "claude-fake",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
    }
    job = await wait_finished(client, tenant, await submit(client, tenant, body))
    assert job["status"] == "succeeded", job
    assert job["result"] == f"reply to: {text}"
    assert job["provider"] == "anthropic"
    assert job["usage"] == {"input_tokens": 4, "output_tokens": 4}
    [call] = fake_llm.calls_for(text)
    assert call.api == "anthropic"


async def test_provider_that_fails_twice_then_succeeds(
    client: httpx.AsyncClient, tenant: TenantKey, fake_llm: FakeLLMServer
) -> None:
    for model in ("gpt-fake@fail=2", "claude-fake@fail=2@status=529"):
        text = unique("flaky ")
        job_id = await submit(client, tenant, chat(text, model=model))
        job = await wait_finished(client, tenant, job_id)
        assert job["status"] == "succeeded", job
        assert len(fake_llm.calls_for(text)) == 3
        events = sse_events(
            (await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text
        )
        retries = [e for e in events if e["data"].get("status") == "retrying"]
        assert [e["data"]["attempt"] for e in retries] == [2, 3]


async def test_retry_honours_retry_after(
    client: httpx.AsyncClient, tenant: TenantKey, fake_llm: FakeLLMServer
) -> None:
    text = unique("limited ")
    job_id = await submit(
        client, tenant, chat(text, model="gpt-fake@fail=1@status=429@retry_after=1")
    )
    job = await wait_finished(client, tenant, job_id)
    assert job["status"] == "succeeded"
    first, second = fake_llm.calls_for(text)
    assert second.at - first.at >= 0.95  # backoff alone would be ~0.05 s


async def test_provider_that_always_fails_marks_the_job_failed(
    client: httpx.AsyncClient, tenant: TenantKey, fake_llm: FakeLLMServer
) -> None:
    text = unique("broken ")
    job_id = await submit(client, tenant, chat(text, model="gpt-fake@always=500"))
    job = await wait_finished(client, tenant, job_id)
    assert job["status"] == "failed"
    assert "openai answered 500: fake failure 500" in str(job["error"])
    assert len(fake_llm.calls_for(text)) == 4  # AYUSH_PROVIDER_MAX_ATTEMPTS default
    events = sse_events(
        (await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text
    )
    assert [e["event"] for e in events[-2:]] == ["error", "done"]
    assert events[-1]["data"] == {"status": "failed"}

    # A permanent error is not retried.
    text = unique("refused ")
    job = await wait_finished(
        client, tenant, await submit(client, tenant, chat(text, model="claude-fake@always=400"))
    )
    assert job["status"] == "failed" and "400" in str(job["error"])
    assert len(fake_llm.calls_for(text)) == 1


async def test_fifty_slow_calls_run_concurrently_on_one_worker(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    started = time.monotonic()
    ids = [
        await submit(client, tenant, chat(unique("slow "), model="gpt-fake@delay=2000"))
        for _ in range(50)
    ]

    async def all_done() -> bool:
        for job_id in ids:
            job = (await client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
            if job["status"] != "succeeded":
                return False
        return True

    await eventually(all_done, 60, "50 slow jobs")
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"50 jobs of 2 s took {elapsed:.1f}s: not concurrent"


def _requested(tenant: TenantKey, job_id: uuid.UUID, text: str) -> Envelope[JobRequested]:
    return Envelope[JobRequested](
        type="ai.job.requested",
        tenant_id=tenant.tenant_id,  # type: ignore[arg-type]
        actor=Actor(kind="system", id="test"),
        correlation_id=job_id,
        payload=JobRequested(
            job_id=job_id,
            job=ChatJob(model="gpt-fake", messages=[ChatMessage(role="user", content=text)]),
        ),
    )


async def test_same_event_twice_gives_one_result_and_one_usage_event(
    client: httpx.AsyncClient, tenant: TenantKey, running: Running, fake_llm: FakeLLMServer
) -> None:
    # Submit through HTTP so the job row exists, then deliver its event again.
    text = unique("twice ")
    job_id = await submit(client, tenant, chat(text, model="gpt-fake"))
    first = await wait_finished(client, tenant, job_id)
    requested = [
        r
        for r in await read_topic(running.settings, topics.AI_JOB_REQUESTED.name)
        if str(decode_raw(r.value).correlation_id) == job_id
    ]
    [original] = requested
    publisher = Publisher(running.settings)
    await publisher.start()
    try:
        await publisher.send(
            original.topic, original.value, key=original.key, headers=list(original.headers)
        )
        # A second, unrelated job proves the duplicate has been consumed past.
        marker = await submit(client, tenant, chat(unique("after "), model="gpt-fake"))
        await wait_finished(client, tenant, marker)
    finally:
        await publisher.stop()

    usage = [
        decode_raw(r.value)
        for r in await read_topic(running.settings, topics.USAGE_RECORDED.name)
        if str(decode_raw(r.value).correlation_id) == job_id
    ]
    assert len({u.id for u in usage}) == 1
    again = (await client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
    assert again["result"] == first["result"] and again["finished_at"] == first["finished_at"]
    assert len(fake_llm.calls_for(text)) == 1


async def test_unparseable_event_goes_to_dead_letters_and_the_group_goes_on(
    client: httpx.AsyncClient, tenant: TenantKey, running: Running
) -> None:
    publisher = Publisher(running.settings)
    await publisher.start()
    poison = unique("poison-").encode()
    try:
        topic = running.settings.topic(topics.AI_JOB_REQUESTED.name)
        await publisher.send(topic, b"{not an envelope " + poison, key=poison, headers=[])
        bad_payload = _requested(tenant, uuid.uuid4(), "x").model_dump(mode="json")
        bad_payload["payload"]["job"]["messages"] = "nope"
        import json

        await publisher.send(topic, json.dumps(bad_payload).encode(), key=poison, headers=[])
    finally:
        await publisher.stop()
    job = await wait_finished(client, tenant, await submit(client, tenant, chat("still alive")))
    assert job["status"] == "succeeded"

    async def dead_letters() -> list[object] | None:
        records = await read_topic(running.settings, topics.AI_JOB_REQUESTED.dead_letter)
        mine = [r for r in records if r.key == poison]
        return mine if len(mine) == 2 else None

    parked = await eventually(dead_letters, 20, "two dead letters")
    errors = [dict(r.headers)["ayush-dlq-error"].decode() for r in parked]  # type: ignore[attr-defined]
    assert any("unparseable" in e for e in errors)
    assert any("ValidationError" in e for e in errors)
