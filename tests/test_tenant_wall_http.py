"""Two tenants read through the ingress, whose reads run behind row-level security."""

from __future__ import annotations

import httpx

from infra.db.engine import Database
from tests.conftest import make_tenant
from tests.test_jobs_http import chat, submit, wait_finished


async def test_two_tenants_read_their_own_rows_behind_the_wall(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b = await make_tenant(db, admin=True), await make_tenant(db, admin=True)
    said = {a.key: "hello from a", b.key: "hello from b"}
    jobs = {tenant.key: await submit(client, tenant, chat(said[tenant.key])) for tenant in (a, b)}
    for tenant, other in ((a, b), (b, a)):
        done = await wait_finished(client, tenant, jobs[tenant.key])
        assert done["status"] == "succeeded" and done["result"] == said[tenant.key], done
        theirs = await client.get(f"/v1/jobs/{jobs[other.key]}", headers=tenant.headers)
        assert theirs.status_code == 404
        for path in (
            "/v1/memories?user_id=someone",
            "/v1/budgets/tenant",
            "/v1/usage",
            "/v1/batches",
        ):
            response = await client.get(path, headers=tenant.headers)
            assert response.status_code == 200, (path, response.text)
