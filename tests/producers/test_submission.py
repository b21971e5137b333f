"""One way to submit a job, whatever the route: the same refusals, each route's wire format,
and one rule for the job's row (written before the job id is handed out).

The ingress here runs alone: no worker takes the jobs, so what a client sees is what the
ingress did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform
from tests.test_jobs_http import chat

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("submission"))
    try:
        platform.start_ingress_with(
            {
                # The smallest event log record allowed: a 2 MiB prompt cannot be published.
                "AYUSH_KAFKA_MAX_MESSAGE_BYTES": str(MIB),
                "AYUSH_RATE_LIMIT_TOKENS_PER_MIN": str(100_000_000),
                "AYUSH_GATEWAY_WAIT_TIMEOUT_S": "1",
            }
        )
        yield platform
    finally:
        platform.stop()


@pytest.fixture
async def client(ingress: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=60) as http:
        yield http


@pytest.fixture
async def admin(db: Database) -> TenantKey:
    return await make_tenant(db, admin=True)


async def _jobs_of(db: Database, tenant: TenantKey) -> int:
    async with db.transaction() as session:
        found = await session.execute(
            text("SELECT count(*) FROM jobs WHERE tenant_id = :t"), {"t": tenant.tenant_id}
        )
    return int(found.scalar_one())


async def _reserved(client: httpx.AsyncClient, tenant: TenantKey) -> Decimal:
    budget = await client.get("/v1/budgets/tenant", headers=tenant.headers)
    assert budget.status_code == 200, budget.text
    return Decimal(budget.json()["reserved_usd"])


async def test_a_publish_failure_is_the_same_refusal_in_each_routes_wire_format(
    client: httpx.AsyncClient, admin: TenantKey, db: Database
) -> None:
    # Each message within its own limit, together over the log's.
    messages = [{"role": "user", "content": "word " * (MIB // 10)} for _ in range(3)]
    jobs = await client.post(
        "/v1/jobs", json={**chat("x"), "messages": messages}, headers=admin.headers
    )
    assert jobs.status_code == 413, jobs.text[:300]
    assert jobs.json()["error"] == "too_large"

    openai = await client.post(
        "/v1/chat/completions",
        json={"model": "local-echo", "messages": messages},
        headers=admin.headers,
    )
    assert openai.status_code == 413, openai.text[:300]
    error = openai.json()["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"

    # Neither left a job that will never run, nor money held for one.
    assert await _jobs_of(db, admin) == 0
    assert await _reserved(client, admin) == 0


async def test_a_job_id_handed_out_can_be_read_at_once_on_every_route(
    client: httpx.AsyncClient, admin: TenantKey
) -> None:
    accepted = await client.post("/v1/jobs", json=chat("read me"), headers=admin.headers)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    found = await client.get(f"/v1/jobs/{job_id}", headers=admin.headers)
    assert found.status_code == 200 and found.json()["status"] == "queued", found.text

    # No worker answers: the call gives up waiting, naming the job, which goes on.
    waited = await client.post(
        "/v1/chat/completions",
        json={"model": "local-echo", "messages": [{"role": "user", "content": "read me"}]},
        headers=admin.headers,
    )
    assert waited.status_code == 504, waited.text
    job_id = waited.headers["X-Ayush-Job-Id"]
    found = await client.get(f"/v1/jobs/{job_id}", headers=admin.headers)
    assert found.status_code == 200, found.text
    job = found.json()
    assert job["status"] == "queued" and job["model"] == "local-echo"
