"""The end-to-end path through HTTP: submit, stream, read back; auth and validation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from infra.kafka.codec import decode_raw
from tests.conftest import Running, TenantKey, make_tenant
from tests.harness import eventually, sse_events, unique
from tests.kafka_tools import read_topic


def chat(content: str, model: str = "local-echo", **extra: object) -> dict[str, object]:
    return {
        "kind": "chat",
        "model": model,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


async def submit(client: httpx.AsyncClient, tenant: TenantKey, body: dict[str, object]) -> str:
    response = await client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def wait_finished(
    client: httpx.AsyncClient, tenant: TenantKey, job_id: str, timeout_s: float = 30
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        job = (await client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return await eventually(probe, timeout_s, f"job {job_id} to finish")


async def test_chat_job_streams_deltas_then_result(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    words = "the quick brown fox jumps"
    job_id = await submit(client, tenant, chat(words, user_id="user-7", metadata={"app": "web"}))

    response = await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and events[0]["data"]["status"] == "queued"
    assert "running" in [e["data"].get("status") for e in events if e["event"] == "status"]
    deltas = [e["data"]["text"] for e in events if e["event"] == "delta"]
    assert "".join(deltas) == words
    assert kinds[-2:] == ["result", "done"]
    assert events[-2]["data"]["text"] == words

    job = (await client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
    assert job["status"] == "succeeded"
    assert job["result"] == words
    assert job["provider"] == "local" and job["model"] == "local-echo"
    assert job["usage"]["output_tokens"] == 5
    assert job["user_id"] == "user-7" and job["metadata"] == {"app": "web"}
    assert job["started_at"] and job["finished_at"]


async def test_late_join_gets_everything_and_resume_gets_only_the_rest(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    job_id = await submit(client, tenant, chat("late join works"))
    await wait_finished(client, tenant, job_id)

    full = sse_events((await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text)
    assert full[-2]["data"]["text"] == "late join works"
    middle = full[len(full) // 2]
    resumed = sse_events(
        (
            await client.get(
                f"/v1/jobs/{job_id}/events",
                headers={**tenant.headers, "Last-Event-ID": middle["id"]},
            )
        ).text
    )
    assert [e["id"] for e in resumed] == [e["id"] for e in full[len(full) // 2 + 1 :]]
    assert resumed[-1]["event"] == "done"


async def test_auth_and_tenant_isolation(
    client: httpx.AsyncClient, tenant: TenantKey, db: object
) -> None:
    missing = await client.post("/v1/jobs", json=chat("x"))
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    wrong = await client.post(
        "/v1/jobs", json=chat("x"), headers={"Authorization": "Bearer ayk_nope"}
    )
    assert wrong.status_code == 401

    job_id = await submit(client, tenant, chat("mine"))
    other = await make_tenant(db)  # type: ignore[arg-type]
    assert (await client.get(f"/v1/jobs/{job_id}", headers=other.headers)).status_code == 404
    assert (await client.get(f"/v1/jobs/{job_id}/events", headers=other.headers)).status_code == 404
    assert (await client.get(f"/v1/jobs/{uuid.uuid4()}", headers=tenant.headers)).status_code == 404


async def test_bad_input_is_named(client: httpx.AsyncClient, tenant: TenantKey) -> None:
    cases = [
        ({**chat("x"), "surprise": 1}, "surprise"),
        ({**chat("x"), "temperature": "hot"}, "temperature"),
        (
            {"kind": "chat", "model": "local-echo", "messages": [{"role": "bot", "content": "x"}]},
            "messages.0.role",
        ),
        ({"kind": "chat", "model": "local-echo", "messages": []}, "messages"),
        (chat("x", model="mystery-model"), "model"),
    ]
    for body, field in cases:
        response = await client.post("/v1/jobs", json=body, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        fields = [d["field"] for d in response.json()["details"]]
        assert field in fields, (field, response.json())
    broken = await client.post("/v1/jobs", content=b"{not json", headers=tenant.headers)
    assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"


async def test_curl_style_form_content_type_is_accepted(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    import json

    response = await client.post(
        "/v1/jobs",
        content=json.dumps(chat("from curl")).encode(),
        headers={**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 202


async def test_idempotency_key_returns_same_job_and_publishes_once(
    client: httpx.AsyncClient, tenant: TenantKey, running: Running
) -> None:
    key = unique("idem-")
    headers = {**tenant.headers, "Idempotency-Key": key}
    first = await client.post("/v1/jobs", json=chat("once only"), headers=headers)
    second = await client.post("/v1/jobs", json=chat("once only"), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    conflict = await client.post("/v1/jobs", json=chat("other body"), headers=headers)
    assert conflict.status_code == 409

    job_id = first.json()["id"]
    await wait_finished(client, tenant, job_id)
    records = await read_topic(running.settings, "ai.job.requested")
    # The topic is shared by the session: other tests put deliberately broken
    # records on it (dead-letter tests), so only this job's envelopes count.
    mine = [r for r in records if job_id.encode() in r.value and _correlated(r.value, job_id)]
    assert len(mine) == 1


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert set(ready["checks"]) == {"kafka", "postgres", "redis"}


def _correlated(value: bytes, job_id: str) -> bool:
    return str(decode_raw(value).correlation_id) == job_id


async def test_text_parts_count_against_the_budget(client: httpx.AsyncClient, db: Any) -> None:
    """A message's text parts are sent upstream, so they are admitted, not only `content`."""
    admin = await make_tenant(db, admin=True)
    put = await client.put(
        "/v1/budgets/tenant", json={"monthly_usd": "0.05"}, headers=admin.headers
    )
    assert put.status_code == 200, put.text
    # About 220,000 tokens: over $0.20 at gpt-fake's $1 per 1M tokens in.
    text = "The quick brown fox jumps over the lazy dog. " * 22_000
    message = {"role": "user", "content": "", "parts": [{"type": "text", "text": text}]}
    body = {"kind": "chat", "model": "gpt-fake", "max_tokens": 1, "messages": [message]}
    response = await client.post("/v1/jobs", json=body, headers=admin.headers)
    assert response.status_code == 402, response.text
    assert response.json()["error"] == "budget_exceeded"


async def test_resume_from_an_unknown_id_is_refused_naming_the_header(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    job_id = await submit(client, tenant, chat("resume me"))
    await wait_finished(client, tenant, job_id)
    full = sse_events((await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text)
    newest = full[-1]["id"]
    millis = int(newest.split("-")[0])
    for bad in ("abc", "1-2-3", f"{millis + 10_000}-0", f"{newest.split('-')[0]}-999", "9" * 30):
        response = await client.get(
            f"/v1/jobs/{job_id}/events", headers={**tenant.headers, "Last-Event-ID": bad}
        )
        assert response.status_code == 400, (bad, response.text)
        body = response.json()
        assert body["error"] == "invalid_request" and "Last-Event-ID" in body["message"]
        assert body["details"][0]["field"] == "Last-Event-ID"
    # From the start ("0-0") is no stranger: it replays everything.
    again = await client.get(
        f"/v1/jobs/{job_id}/events", headers={**tenant.headers, "Last-Event-ID": "0-0"}
    )
    assert [e["id"] for e in sse_events(again.text)] == [e["id"] for e in full]


async def test_resume_after_the_end_closes_at_once(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    job_id = await submit(client, tenant, chat("already over"))
    await wait_finished(client, tenant, job_id)
    full = sse_events((await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text)
    assert full[-1]["event"] == "done"
    # The stream waits 15 s for news before a keepalive: well under that means it closed.
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=5) as quick:
        resumed = await quick.get(
            f"/v1/jobs/{job_id}/events",
            headers={**tenant.headers, "Last-Event-ID": full[-1]["id"]},
        )
    assert resumed.status_code == 200
    assert resumed.headers["content-type"].startswith("text/event-stream")
    assert sse_events(resumed.text) == []
