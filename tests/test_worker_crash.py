"""A worker killed with SIGKILL mid-call loses nothing and does nothing twice."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from infra.kafka.codec import decode_raw
from infra.local_stack import ServiceAddresses
from schemas import topics
from tests.conftest import TenantKey, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import chat


@pytest.mark.timeout(300)  # two process starts and a group rebalance: slow on a busy machine
async def test_sigkill_mid_call_then_restart_finishes_every_job_once(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tenant: TenantKey, tmp_path: Path
) -> None:
    platform, settings = new_platform(services, fake_llm, tmp_path)
    try:
        platform.start_ingress()
        worker = platform.start_worker("model-calls")
        texts = [unique("crash ") for _ in range(20)]
        async with httpx.AsyncClient(base_url=platform.url, headers=tenant.headers) as client:
            ids = []
            for text in texts:
                response = await client.post(
                    "/v1/jobs", json=chat(text, model="gpt-fake@delay=3000")
                )
                assert response.status_code == 202
                ids.append(response.json()["id"])

            async def all_in_flight() -> bool:
                return all(fake_llm.calls_for(t) for t in texts)

            await eventually(all_in_flight, 20, "every call to start")
            worker.kill()
            statuses = {(await client.get(f"/v1/jobs/{i}")).json()["status"] for i in ids}
            assert statuses == {"running"}, "the kill must land while calls are in flight"

            platform.start_worker("model-calls")

            async def all_succeeded() -> bool:
                jobs = [(await client.get(f"/v1/jobs/{i}")).json() for i in ids]
                return all(j["status"] == "succeeded" for j in jobs)

            await eventually(all_succeeded, 60, "every job to finish after the restart")
            for job_id, text in zip(ids, texts, strict=True):
                job = (await client.get(f"/v1/jobs/{job_id}")).json()
                assert job["result"] == f"reply to: {text}"
                # Interrupted calls were redone: once before the kill, once after.
                assert len(fake_llm.calls_for(text)) == 2

        usage = [
            decode_raw(r.value) for r in await read_topic(settings, topics.USAGE_RECORDED.name)
        ]
        per_job: dict[str, set[object]] = {}
        for event in usage:
            per_job.setdefault(str(event.correlation_id), set()).add(event.id)
        assert sorted(per_job) == sorted(ids)
        assert all(len(event_ids) == 1 for event_ids in per_job.values())
    finally:
        platform.stop()
