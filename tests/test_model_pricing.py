"""Billable work names a model that is routed and priced, at every door, or it does not run."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx

from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.jobs import ChatJob, ChatMessage, JobRequested
from tests.conftest import Running, TenantKey, make_tenant
from tests.harness import unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import chat, wait_finished


def _openai_chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_unpriced_model_is_refused(client: httpx.AsyncClient, tenant: TenantKey) -> None:
    unpriced = f"gpt-unpriced-{uuid.uuid4().hex[:8]}"
    doors = [
        ("/v1/jobs", chat("x", model=unpriced)),
        ("/v1/chat/completions", _openai_chat(unpriced)),
        ("/v1/chat/completions", _openai_chat(f"openai/{unpriced}")),
        ("/v1/embeddings", {"model": f"text-embedding-{unpriced}", "input": "x"}),
    ]
    for path, body in doors:
        response = await client.post(path, json=body, headers=tenant.headers)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "model_not_priced" and error["param"] == "model", error
        assert unpriced in error["message"] and error["type"] == "invalid_request_error"
    usage = await client.get("/v1/usage", headers=tenant.headers)
    assert usage.json()["rows"] == []


async def test_a_spent_budget_refuses_the_models_that_used_to_run_free(
    client: httpx.AsyncClient, db: object
) -> None:
    admin = await make_tenant(db, admin=True)  # type: ignore[arg-type]
    # A millionth of a dollar: any priced call spends it, a free one does not.
    put = await client.put(
        "/v1/budgets/tenant", json={"monthly_usd": "0.000001"}, headers=admin.headers
    )
    assert put.status_code == 200, put.text
    for model in (
        "o1-pro", "gpt-5", "gpt-4-turbo", "chatgpt-4o-latest", "claude-3-opus-20240229",
        "anthropic/claude-3-opus-latest",
    ):  # fmt: skip
        response = await client.post(
            "/v1/chat/completions", json=_openai_chat(model), headers=admin.headers
        )
        assert response.status_code == 402, (model, response.text)
        assert response.json()["error"]["code"] == "budget_exceeded"
    # A model free on purpose still runs.
    free = await client.post("/v1/jobs", json=chat("still free"), headers=admin.headers)
    assert free.status_code == 202, free.text


async def test_worker_fails_an_unpriced_job_instead_of_recording_zero(
    client: httpx.AsyncClient, tenant: TenantKey, running: Running
) -> None:
    """A job that skipped the ingress (an old event, another producer) is not run for $0."""
    job_id = uuid.uuid4()
    model = f"gpt-unpriced-{uuid.uuid4().hex[:8]}"
    text = unique("unpriced ")
    envelope = Envelope[JobRequested](
        type="ai.job.requested",
        tenant_id=tenant.tenant_id,  # type: ignore[arg-type]
        actor=Actor(kind="system", id="test"),
        correlation_id=job_id,
        payload=JobRequested(
            job_id=job_id,
            job=ChatJob(model=model, messages=[ChatMessage(role="user", content=text)]),
        ),
    )
    publisher = Publisher(running.settings)
    await publisher.start()
    try:
        await publisher.publish(topics.AI_JOB_REQUESTED.name, envelope)
    finally:
        await publisher.stop()
    job = await wait_finished(client, tenant, str(job_id))
    assert job["status"] == "failed" and "no price" in job["error"], job
    usage = [
        decode_raw(r.value)
        for r in await read_topic(running.settings, topics.USAGE_RECORDED.name)
        if decode_raw(r.value).correlation_id == job_id
    ]
    assert usage == []


async def test_cached_prompt_tokens_are_billed_at_the_cached_price(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    body = {
        "model": "gpt-fake@cached=3",
        "messages": [{"role": "user", "content": unique("four words here ")}],
    }
    response = await client.post("/v1/chat/completions", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    # tests/fakes/prices.toml: $1 input, $0.50 cached input, $2 output per million tokens.
    uncached = usage["prompt_tokens"] - 3
    expected = (Decimal(uncached) + Decimal("1.5") + 2 * Decimal(usage["completion_tokens"])) / (
        1_000_000
    )
    assert Decimal(response.headers["X-Ayush-Cost-Usd"]) == expected.quantize(Decimal("1e-8"))
