"""The memory API with the Pinecone store: a namespace per tenant, the user in every filter."""

from __future__ import annotations

from pathlib import Path

import httpx

from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.fakes.pinecone import FakePinecone
from tests.harness import eventually, unique
from tests.test_memories_http import remember, search, wait_status


async def test_memories_on_pinecone(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    fake_pinecone: FakePinecone,
    tenant: TenantKey,
    tmp_path: Path,
) -> None:
    platform, _ = new_platform(services, fake_llm, tmp_path)
    platform.env.update(
        {
            "AYUSH_MEMORY_STORE": "pinecone",
            "AYUSH_PINECONE_HOST": fake_pinecone.url,
            "PINECONE_API_KEY": "pc-fake",
        }
    )
    try:
        platform.start_ingress()
        platform.start_worker("memory")
        user, other = unique("user-"), unique("user-")
        async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
            mine = await remember(client, tenant, user, "I am allergic to peanuts")
            theirs = await remember(client, tenant, other, "I am allergic to peanuts too")
            for memory_id in (mine, theirs):
                await wait_status(client, tenant, memory_id, "stored")
            namespace = fake_pinecone.namespaces[str(tenant.tenant_id)]
            assert {f"{mine}#0", f"{theirs}#0"} <= set(namespace)

            hits = await search(client, tenant, user, "allergic to peanuts", top_k=5)
            assert [h["memory_id"] for h in hits] == [mine]

            await client.delete(f"/v1/memories/{mine}", headers=tenant.headers)

            async def gone() -> bool:
                return f"{mine}#0" not in namespace

            await eventually(gone, 30, "the vectors to be deleted from Pinecone")
            assert await search(client, tenant, user, "allergic to peanuts") == []
            assert f"{theirs}#0" in namespace
    finally:
        platform.stop()
