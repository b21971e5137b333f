"""Small steps the integration tests share."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TenantKey
from tests.fakes.vendors import VendorCall
from tests.harness import eventually
from tests.integrations.conftest import Integrations


async def connect(
    api: httpx.AsyncClient, tenant: TenantKey, connector: str, credentials: dict[str, Any]
) -> str:
    response = await api.post(
        "/v1/connections",
        json={"connector": connector, "credentials": credentials},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def act(
    api: httpx.AsyncClient, tenant: TenantKey, connection_id: str, action: str, params: dict
) -> str:
    response = await api.post(
        "/v1/actions",
        json={"connection_id": connection_id, "action": action, "params": params},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def finished(
    api: httpx.AsyncClient, tenant: TenantKey, job_id: str, timeout_s: float = 30
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        job = (await api.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return await eventually(probe, timeout_s, f"job {job_id} to finish")


async def vendor_calls(
    integrations: Integrations, vendor: str, needle: str, timeout_s: float = 60
) -> list[VendorCall]:
    async def probe() -> list[VendorCall]:
        return integrations.vendors.matching(vendor, needle)

    return await eventually(probe, timeout_s, f"a {vendor} call mentioning {needle}")
