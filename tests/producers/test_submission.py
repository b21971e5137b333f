"""One way to submit a job, whatever the route: the same refusals, each route's wire format,
and one rule for the job's row (written before the job id is handed out).

The ingress here runs alone: no worker takes the jobs, so what a client sees is what the
ingress did.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from infra.db.engine import Database
from infra.db.models import Job
from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, ingress_alone, make_tenant
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform
from tests.test_jobs_http import chat

MIB = 1024 * 1024
ENV = {
    # The smallest event log record allowed: the prompts below cannot be published.
    "AYUSH_KAFKA_MAX_MESSAGE_BYTES": str(MIB),
    "AYUSH_RATE_LIMIT_TOKENS_PER_MIN": str(100_000_000),
    "AYUSH_GATEWAY_WAIT_TIMEOUT_S": "1",
}


@pytest.fixture(scope="module")
def ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    with ingress_alone(services, fake_llm, tmp_path_factory.mktemp("submission"), ENV) as alone:
        yield alone


def _openai_chat(messages: list[dict[str, str]]) -> dict[str, object]:
    return {"model": "local-echo", "messages": messages}


async def _jobs_of(db: Database, tenant: TenantKey) -> int:
    count = select(func.count()).select_from(Job).where(Job.tenant_id == tenant.tenant_id)
    async with db.transaction() as session:
        return int((await session.execute(count)).scalar_one())


async def test_a_publish_failure_is_the_same_refusal_in_each_routes_wire_format(
    ingress: Platform, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    # Each message within its own limit, together over the log's.
    messages = [{"role": "user", "content": "word " * (MIB // 10)} for _ in range(3)]
    async with httpx.AsyncClient(base_url=ingress.url, timeout=60) as client:
        jobs = await client.post(
            "/v1/jobs", json={**chat("x"), "messages": messages}, headers=admin.headers
        )
        assert jobs.status_code == 413, jobs.text[:300]
        assert jobs.json()["error"] == "too_large"

        openai = await client.post(
            "/v1/chat/completions", json=_openai_chat(messages), headers=admin.headers
        )
        assert openai.status_code == 413, openai.text[:300]
        error = openai.json()["error"]
        assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"

        # Neither left a job that will never run, nor money held for one.
        assert await _jobs_of(db, admin) == 0
        budget = (await client.get("/v1/budgets/tenant", headers=admin.headers)).json()
        assert Decimal(budget["reserved_usd"]) == 0


async def test_a_job_id_handed_out_can_be_read_at_once_on_every_route(
    ingress: Platform, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    async with httpx.AsyncClient(base_url=ingress.url, timeout=60) as client:
        accepted = await client.post("/v1/jobs", json=chat("read me"), headers=admin.headers)
        assert accepted.status_code == 202, accepted.text
        found = await client.get(f"/v1/jobs/{accepted.json()['id']}", headers=admin.headers)
        assert found.status_code == 200 and found.json()["status"] == "queued", found.text

        # No worker answers: the call gives up waiting, naming the job, which goes on.
        waited = await client.post(
            "/v1/chat/completions",
            json=_openai_chat([{"role": "user", "content": "read me"}]),
            headers=admin.headers,
        )
        assert waited.status_code == 504, waited.text
        job_id = waited.headers["X-Ayush-Job-Id"]
        found = await client.get(f"/v1/jobs/{job_id}", headers=admin.headers)
        assert found.status_code == 200, found.text
        assert found.json()["status"] == "queued" and found.json()["model"] == "local-echo"
