"""Readiness and metrics say what the operator needs, and nothing to anyone else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from tests.conftest import new_platform
from tests.fakes.llm import FakeLLMServer
from tests.fakes.tcp import TcpForwarder
from tests.harness import Platform, eventually


@dataclass
class Ingress:
    platform: Platform
    redis: TcpForwarder
    metrics_url: str


@pytest.fixture(scope="module")
def ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ingress]:
    """An ingress that reaches Redis through a forwarder the test can cut."""
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("health"))
    metrics_port = free_port()
    with TcpForwarder(services.redis_url) as redis:
        platform.env["REDIS_URL"] = redis.url()
        try:
            platform.start_ingress_with({"AYUSH_METRICS_PORT": str(metrics_port)})
            yield Ingress(platform, redis, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            platform.stop()


async def test_readiness_names_component_states_not_addresses(ingress: Ingress) -> None:
    ingress.redis.cut()
    async with httpx.AsyncClient(base_url=ingress.platform.url, timeout=10) as http:

        async def not_ready() -> httpx.Response | None:
            answer = await http.get("/readyz")
            return answer if answer.status_code == 503 else None

        answer = await eventually(not_ready, what="/readyz to report Redis gone")
    assert answer.json() == {
        "status": "not_ready",
        "checks": {"kafka": "ok", "postgres": "ok", "redis": "error"},
    }
    assert str(ingress.redis.port) not in answer.text
    # The reason is for the operator, in the log.
    log = ingress.platform.procs[0]

    async def logged() -> bool:
        return "readiness check redis failed" in log.tail(400)

    await eventually(logged, what="the failed check's reason in the ingress's log")


async def test_metrics_are_served_apart_from_the_api(ingress: Ingress) -> None:
    async with httpx.AsyncClient(base_url=ingress.platform.url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        public = await http.get("/metrics")
        served = await http.get(ingress.metrics_url)
    assert public.status_code == 404
    assert served.status_code == 200
    assert 'ayush_http_requests_total{method="GET",route="/healthz",status="200"}' in served.text
