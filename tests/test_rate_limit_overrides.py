"""Rate limits of one key: set by an admin, applied by every ingress, kept across a Redis loss."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.local_stack import ServiceAddresses
from infra.rate_windows import RateWindows
from tests.conftest import make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, early_in_a_minute, eventually

RPM = 40  # the default in this module

pytestmark = pytest.mark.timeout(300)  # three ingress starts: slow on a busy machine


@pytest.fixture(scope="module")
def ingresses(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, Any, list[str]]]:
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("rate-limits"))
    platform.env["AYUSH_RATE_LIMIT_REQUESTS_PER_MIN"] = str(RPM)
    try:
        urls = []
        for _ in range(2):
            platform.start_ingress()
            urls.append(platform.url)
        yield platform, settings, urls
    finally:
        platform.stop()


@pytest.fixture
async def clients(
    ingresses: tuple[Platform, Any, list[str]],
) -> AsyncIterator[list[httpx.AsyncClient]]:
    made = [httpx.AsyncClient(base_url=url, timeout=30) for url in ingresses[2]]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


def bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


async def test_an_admin_sets_one_keys_limits_and_both_ingresses_hold_it_to_them(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    tenant_id = uuid.UUID(str(admin.tenant_id))
    key, plaintext = await create_api_key(db, tenant_id)
    _, other_plaintext = await create_api_key(db, tenant_id)
    url = f"/v1/ratelimits/keys/{key.id}"

    before = await clients[0].get(url, headers=admin.headers)
    assert before.status_code == 200 and before.json()["rpm"] == RPM
    assert before.json()["own"] == {"rpm": None, "tpm": None}
    refused = await clients[0].put(url, json={"rpm": 1}, headers=bearer(plaintext))
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    bad = await clients[0].put(url, json={"rpm": 0}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "rpm"
    put = await clients[1].put(url, json={"rpm": 5, "tpm": 5000}, headers=admin.headers)
    assert put.status_code == 200, put.text
    assert put.json() == {
        "api_key_id": str(key.id), "rpm": 5, "tpm": 5000, "own": {"rpm": 5, "tpm": 5000}
    }  # fmt: skip
    seen = (await clients[0].get(url, headers=bearer(plaintext))).json()
    assert seen["rpm"] == 5 and seen["tpm"] == 5000  # the key sees its own limits
    stranger = await make_tenant(db, admin=True)
    assert (await clients[0].get(url, headers=stranger.headers)).status_code == 404

    # Tokens: a job whose estimate exceeds the key's tokens per minute is refused.
    job = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}
    big = await clients[0].post(
        "/v1/jobs", json={**job, "max_tokens": 6000}, headers=bearer(plaintext)
    )
    assert big.status_code == 429 and "tokens" in big.json()["message"]
    assert big.headers["X-RateLimit-Limit-Tokens"] == "5000"

    # Requests: a fresh key held to 5 a minute, in a burst over both ingresses.
    burst, burst_plaintext = await create_api_key(db, tenant_id)
    five = await clients[0].put(
        f"/v1/ratelimits/keys/{burst.id}", json={"rpm": 5}, headers=admin.headers
    )
    assert five.status_code == 200 and five.json()["own"] == {"rpm": 5, "tpm": None}
    await eventually(early_in_a_minute, 20, "the start of a minute")
    responses = await asyncio.gather(
        *(clients[i % 2].get("/v1/usage", headers=bearer(burst_plaintext)) for i in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429] * 3
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"5"}
    # Another key of the tenant keeps the default.
    default = await clients[1].get("/v1/usage", headers=bearer(other_plaintext))
    assert default.status_code == 200 and default.headers["X-RateLimit-Limit"] == str(RPM)

    cleared = await clients[0].delete(url, headers=admin.headers)
    assert cleared.status_code == 204
    back = await clients[1].get(url, headers=admin.headers)
    assert back.json()["rpm"] == RPM and back.json()["own"] == {"rpm": None, "tpm": None}


async def test_a_new_ingress_restores_the_limits_redis_lost(
    ingresses: tuple[Platform, Any, list[str]], db: Database
) -> None:
    platform, settings, _ = ingresses
    admin = await make_tenant(db, admin=True)
    key, plaintext = await create_api_key(db, uuid.UUID(str(admin.tenant_id)))
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        put = await client.put(
            f"/v1/ratelimits/keys/{key.id}", json={"rpm": 7}, headers=admin.headers
        )
        assert put.status_code == 200, put.text
    windows = RateWindows(settings)
    try:
        await windows.set_key_limits(key.id, None, None)  # as if Redis had lost its copy
    finally:
        await windows.close()
    platform.start_ingress()
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        response = await client.get("/v1/usage", headers=bearer(plaintext))
    assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "7"
