"""Open event streams are capped per key, per tenant and per process, on every streaming
route; at the caps the rest of the ingress keeps answering."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import httpx
import pytest

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.local_stack import ServiceAddresses
from tests.conftest import Running, TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually
from tests.test_jobs_http import chat, submit

PER_KEY, PER_TENANT, PER_PROCESS = 2, 3, 5


@pytest.fixture(scope="module")
def capped(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """An ingress with small stream limits and no worker: every job stays queued."""
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("capped"))
    try:
        platform.start_ingress_with(
            {
                "AYUSH_MAX_STREAMS_PER_KEY": str(PER_KEY),
                "AYUSH_MAX_STREAMS_PER_TENANT": str(PER_TENANT),
                "AYUSH_MAX_STREAMS_PER_PROCESS": str(PER_PROCESS),
                "AYUSH_STREAM_SLOT_LEASE_S": "3",
            }
        )
        yield Running(platform, settings)
    finally:
        platform.stop()


@pytest.fixture
async def http(capped: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=capped.url, timeout=30) as client:
        yield client


async def second_key(db: Database, tenant: TenantKey) -> TenantKey:
    _, plaintext = await create_api_key(db, tenant.tenant_id)  # type: ignore[arg-type]
    return TenantKey(tenant.tenant_id, plaintext, {"Authorization": f"Bearer {plaintext}"})


async def a_batch(http: httpx.AsyncClient, tenant: TenantKey) -> str:
    line = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    uploaded = await http.post(
        "/v1/files", files={"file": ("in.jsonl", line)}, data={"purpose": "batch"},
        headers=tenant.headers,
    )  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    created = await http.post(
        "/v1/batches",
        json={"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions"},
        headers=tenant.headers,
    )
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


class Streams:
    """Event streams held open until closed (or the test ends)."""

    def __init__(self, client: httpx.AsyncClient, stack: AsyncExitStack) -> None:
        self.client = client
        self.stack = stack

    async def open(self, url: str, key: TenantKey, **kwargs: object) -> httpx.Response:
        method = "POST" if "json" in kwargs else "GET"
        request = self.client.stream(method, url, headers=key.headers, **kwargs)  # type: ignore[arg-type]
        response = await self.stack.enter_async_context(request)
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
        else:
            await response.aread()
        return response


async def test_streams_over_a_cap_are_refused_and_the_rest_still_works(
    http: httpx.AsyncClient, db: Database
) -> None:
    tenant = await make_tenant(db)
    other_key = await second_key(db, tenant)
    job_id = await submit(http, tenant, chat("stays queued: no worker runs"))
    events = f"/v1/jobs/{job_id}/events"
    stream_chat = {"json": {"model": "local-echo", "messages": chat("hi")["messages"],
                            "stream": True}}  # fmt: skip
    async with AsyncExitStack() as stack:
        streams = Streams(http, stack)
        first = await streams.open(events, tenant)
        assert first.status_code == 200
        assert (await streams.open(events, tenant)).status_code == 200

        # The key is at its cap, on every streaming route.
        over = await streams.open(events, tenant)
        assert over.status_code == 429
        assert over.json()["error"] == "too_many_streams"
        assert "AYUSH_MAX_STREAMS_PER_KEY" in over.json()["message"]
        completions = await streams.open("/v1/chat/completions", tenant, **stream_chat)
        assert completions.status_code == 429
        assert completions.json()["error"]["code"] == "too_many_streams"
        assert completions.json()["error"]["type"] == "rate_limit_error"

        batch = await a_batch(http, tenant)
        batch_events = await streams.open(f"/v1/batches/{batch}/events", tenant)
        assert batch_events.status_code == 429
        assert batch_events.json()["error"]["code"] == "too_many_streams"

        # Another key of the tenant opens one more; then the tenant is at its cap.
        assert (await streams.open(events, other_key)).status_code == 200
        tenant_over = await streams.open(events, other_key)
        assert tenant_over.status_code == 429
        assert "AYUSH_MAX_STREAMS_PER_TENANT" in tenant_over.json()["message"]

        # The rest of the ingress answers, for the same key too.
        again = await http.post("/v1/jobs", json=chat("still accepted"), headers=tenant.headers)
        assert again.status_code == 202, again.text
        job = await http.get(f"/v1/jobs/{again.json()['id']}", headers=tenant.headers)
        assert job.status_code == 200 and job.json()["status"] == "queued"
        assert (await http.get("/readyz")).status_code == 200

        # Another tenant is not held back by this one, up to the process's own cap.
        stranger = await make_tenant(db)
        theirs = f"/v1/jobs/{await submit(http, stranger, chat('mine'))}/events"
        assert (await streams.open(theirs, stranger)).status_code == 200
        assert (await streams.open(theirs, stranger)).status_code == 200
        full = await streams.open(theirs, await second_key(db, stranger))
        assert full.status_code == 503 and full.json()["error"] == "too_many_streams"

        # Closing a stream frees its slot.
        await first.aclose()

        async def admitted() -> bool:
            async with http.stream("GET", events, headers=tenant.headers) as response:
                return response.status_code == 200

        assert await eventually(admitted, 30, "a closed stream's slot to be given back")
