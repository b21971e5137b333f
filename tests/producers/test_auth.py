"""API keys: what is not shaped like a key costs the ingress nothing, and the cache forgets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.db.tenants import KeyOwner
from infra.local_stack import ServiceAddresses
from producers.ingress.auth import KeyCache
from tests.conftest import TenantKey, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, Proc, raw_http

MB = 1024 * 1024
PATH = f"/v1/jobs/{uuid.uuid4()}"


@pytest.fixture(scope="module")
def ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, Proc]]:
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("auth"))
    try:
        yield platform, platform.start_ingress()
    finally:
        platform.stop()


def rss_bytes(proc: Proc) -> int:
    status = Path(f"/proc/{proc.popen.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def knock(url: str, requests: int, concurrency: int = 8) -> list[int]:
    """`requests` calls, each with a bearer value of its own of 1 MB; their statuses.

    Over bare sockets: an HTTP client library checks each header byte by byte, which
    would take longer than the ingress does."""
    statuses: list[int] = []

    async def caller(offset: int) -> None:
        for n in range(offset, requests, concurrency):
            bearer = f"ayk_{n:08d}".ljust(MB, "x")
            answer = await raw_http(url, "GET", PATH, {"Authorization": f"Bearer {bearer}"})
            assert answer.json()["error"] == "unauthorized"
            statuses.append(answer.status)

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return statuses


async def test_huge_bearer_values_leave_the_ingress_memory_flat(
    ingress: tuple[Platform, Proc], tenant: TenantKey
) -> None:
    platform, proc = ingress
    await knock(platform.url, 50)  # the first calls size the server's buffers
    before = rss_bytes(proc)
    statuses = await knock(platform.url, 1000)
    after = rss_bytes(proc)
    async with httpx.AsyncClient(base_url=platform.url, timeout=60) as http:
        valid = await http.get(PATH, headers=tenant.headers)
    assert statuses == [401] * 1000
    assert after - before < 8 * MB, f"RSS grew by {(after - before) / MB:.1f} MB"
    assert valid.status_code == 404  # through the door: no such job


def test_key_cache_holds_a_bounded_number_of_entries_for_their_ttl_only() -> None:
    now = [0.0]
    cache = KeyCache(max_entries=3, ttl_s=10, timer=lambda: now[0])
    owner = KeyOwner(uuid.uuid4(), uuid.uuid4(), "t", False)
    for n in range(5):
        cache.put(f"hash-{n}", owner if n == 4 else None)
    assert len(cache) == 3
    assert cache.get("hash-4") == (True, owner)
    assert cache.get("hash-0") == (False, None)
    now[0] = 10.5
    assert cache.get("hash-4") == (False, None)
    assert len(cache) == 0


def test_key_cache_forgets_a_changed_key_and_holds_nothing_while_it_could_miss_changes() -> None:
    cache = KeyCache()
    changed = KeyOwner(uuid.uuid4(), uuid.uuid4(), "t", "developer")
    other = KeyOwner(uuid.uuid4(), uuid.uuid4(), "t", "developer")
    cache.put("current", changed)
    cache.put("previous", changed)  # the same key's secret before a rotation
    cache.put("other", other)
    cache.forget_key(changed.key_id)
    assert cache.get("current") == (False, None) and cache.get("previous") == (False, None)
    assert cache.get("other") == (True, other)
    # The change channel is down: a change now would not arrive, so nothing is cached.
    cache.suspend()
    assert cache.get("other") == (False, None)
    cache.put("other", other)
    assert cache.get("other") == (False, None)
    cache.resume()
    cache.put("other", other)
    assert cache.get("other") == (True, other)
