"""SIGTERM: workers finish or hand back in-flight events; the ingress ends open streams."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from infra.kafka.codec import decode_raw
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from tests.conftest import TenantKey, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually, sse_events, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import chat, submit, wait_finished


async def submit_slow(
    http: httpx.AsyncClient, tenant: TenantKey, fake_llm: FakeLLMServer, n: int, delay_ms: int
) -> dict[str, str]:
    """n jobs whose model calls take `delay_ms`; returns {job id: prompt} once all are calling."""
    tag = unique()
    jobs = {}
    for i in range(n):
        prompt = f"slow {tag} {i}"
        jobs[await submit(http, tenant, chat(prompt, model=f"gpt-fake@delay={delay_ms}"))] = prompt

    async def all_calling() -> bool:
        return all(fake_llm.calls_for(p) for p in jobs.values())

    await eventually(all_calling, 20, "every slow call to reach the model")
    return jobs


async def outcome_counts(
    settings: Settings, jobs: dict[str, str]
) -> tuple[Counter[str], Counter[str]]:
    """Per job: how many succeeded and usage events were published."""
    lifecycle = await read_topic(settings, "ai.job.lifecycle")
    usage = await read_topic(settings, "usage.recorded")
    succeeded = Counter(
        str(e.correlation_id)
        for e in map(decode_raw, (r.value for r in lifecycle))
        if e.type == "ai.job.succeeded" and str(e.correlation_id) in jobs
    )
    charged = Counter(
        str(e.correlation_id)
        for e in map(decode_raw, (r.value for r in usage))
        if str(e.correlation_id) in jobs
    )
    return succeeded, charged


@pytest.fixture
def platform(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, Settings]]:
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("shutdown"))
    platform.start_ingress()
    yield platform, settings
    platform.stop()


async def test_sigterm_finishes_in_flight_calls_then_hands_back_the_rest(
    platform: tuple[Platform, Settings], fake_llm: FakeLLMServer, tenant: TenantKey
) -> None:
    plat, settings = platform
    async with httpx.AsyncClient(base_url=plat.url, timeout=30) as http:
        # A deadline longer than the calls: every in-flight call finishes, once.
        first = plat.start_worker("model-calls", {"AYUSH_SHUTDOWN_DEADLINE_S": "30"})
        finishing = await submit_slow(http, tenant, fake_llm, 5, delay_ms=1500)
        assert await asyncio.to_thread(first.terminate, 30) == 0
        for job_id in finishing:
            job = (await http.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
            assert job["status"] == "succeeded", job
        assert all(len(fake_llm.calls_for(p)) == 1 for p in finishing.values())

        # A deadline shorter than the calls: they are cancelled, left uncommitted,
        # and the group's next member does them.
        second = plat.start_worker("model-calls", {"AYUSH_SHUTDOWN_DEADLINE_S": "0.3"})
        handed_back = await submit_slow(http, tenant, fake_llm, 4, delay_ms=8000)
        started = time.monotonic()
        assert await asyncio.to_thread(second.terminate, 30) == 0
        # Leaving the group takes a moment on a busy machine; the calls take 8 s.
        assert time.monotonic() - started < 7, "the worker waited for its calls"
        for job_id in handed_back:
            job = (await http.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
            assert job["status"] == "running", job
        plat.start_worker("model-calls")
        for job_id in handed_back:
            await wait_finished(http, tenant, job_id, timeout_s=30)

    everything = {**finishing, **handed_back}
    succeeded, charged = await outcome_counts(settings, everything)
    assert succeeded == Counter(dict.fromkeys(everything, 1))
    assert charged == Counter(dict.fromkeys(everything, 1))


async def test_sigterm_ends_open_streams_with_a_final_event(
    platform: tuple[Platform, Settings], fake_llm: FakeLLMServer, tenant: TenantKey
) -> None:
    plat, _ = platform
    async with httpx.AsyncClient(base_url=plat.url, timeout=30) as http:
        job_id = await submit(http, tenant, chat("never answered", model="gpt-fake"))
        # No worker runs in this namespace: the stream stays open until shutdown.
        body = b""
        async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=tenant.headers) as r:
            ingress = plat.procs[0]
            async for chunk in r.aiter_bytes():
                body += chunk
                if b"queued" in body and ingress.alive():
                    started = time.monotonic()
                    code = await asyncio.to_thread(ingress.terminate, 30)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 5
    events = sse_events(body.decode())
    assert [e["event"] for e in events] == ["status", "shutdown"]
