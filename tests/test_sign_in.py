"""Sign-in tokens of registered issuers act as the tenant's users (HS256 secrets)."""

from __future__ import annotations

import httpx
import pytest

from infra.db.engine import Database
from tests.conftest import TenantKey, make_tenant
from tests.sign_in import AUDIENCE, hs256_issuer, hs256_token, user_headers


def chat(user_id: str) -> dict[str, object]:
    return {
        "kind": "chat",
        "model": "local-echo",
        "messages": [{"role": "user", "content": "hello"}],
        "user_id": user_id,
    }


@pytest.fixture
async def admin(db: Database) -> TenantKey:
    return await make_tenant(db, admin=True)


async def test_signed_in_user_acts_in_their_tenant(
    client: httpx.AsyncClient, admin: TenantKey
) -> None:
    headers = await user_headers(client, admin, "user-1")
    created = await client.post("/v1/jobs", json=chat("user-1"), headers=headers)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    seen = await client.get(f"/v1/jobs/{job_id}", headers=headers)
    assert seen.status_code == 200, seen.text
    assert seen.json()["user_id"] == "user-1"
    # The tenant's admin key sees the same job: the token acted in the issuer's tenant.
    assert (await client.get(f"/v1/jobs/{job_id}", headers=admin.headers)).status_code == 200


async def test_a_user_token_may_not_manage_issuers(
    client: httpx.AsyncClient, admin: TenantKey
) -> None:
    headers = await user_headers(client, admin, "user-2")
    listed = await client.get("/v1/auth/issuers", headers=headers)
    assert listed.status_code == 403, listed.text


async def test_role_claim_admin_gives_admin(client: httpx.AsyncClient, admin: TenantKey) -> None:
    headers = await user_headers(client, admin, "boss", role="admin")
    listed = await client.get("/v1/auth/issuers", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [i["kind"] for i in listed.json()["data"]] == ["hs256"]
    # Any other role value is a plain user.
    plain = await user_headers(client, admin, "someone", role="authenticated")
    assert (await client.get("/v1/auth/issuers", headers=plain)).status_code == 403


async def test_issuers_routes_need_admin(
    client: httpx.AsyncClient, admin: TenantKey, tenant: TenantKey
) -> None:
    body = {"issuer": "https://x.test", "audience": "a", "hs256_secret": "s" * 40}
    assert (
        await client.post("/v1/auth/issuers", json=body, headers=tenant.headers)
    ).status_code == 403
    assert (await client.get("/v1/auth/issuers", headers=tenant.headers)).status_code == 403
    created = await client.post("/v1/auth/issuers", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    view = created.json()
    assert "hs256_secret" not in view and "s" * 40 not in created.text
    issuer_id = view["id"]
    assert (await client.get(f"/v1/auth/issuers/{issuer_id}", headers=admin.headers)).json() == view
    gone = await client.delete(f"/v1/auth/issuers/{issuer_id}", headers=tenant.headers)
    assert gone.status_code == 403
    gone = await client.delete(f"/v1/auth/issuers/{issuer_id}", headers=admin.headers)
    assert gone.status_code == 204
    again = await client.get(f"/v1/auth/issuers/{issuer_id}", headers=admin.headers)
    assert again.status_code == 404


async def test_issuer_needs_exactly_one_way_to_check_tokens(
    client: httpx.AsyncClient, admin: TenantKey
) -> None:
    both = {
        "issuer": "https://x.test", "audience": "a", "hs256_secret": "s" * 40,
        "jwks_url": "https://x.test/jwks.json",
    }  # fmt: skip
    answer = await client.post("/v1/auth/issuers", json=both, headers=admin.headers)
    assert answer.status_code == 422
    assert answer.json()["details"][0]["field"] == "hs256_secret"
    neither = {"issuer": "https://x.test", "audience": "a"}
    answer = await client.post("/v1/auth/issuers", json=neither, headers=admin.headers)
    assert answer.status_code == 422
    assert answer.json()["details"][0]["field"] == "jwks_url"


async def test_deleted_issuer_signs_nobody_in(client: httpx.AsyncClient, admin: TenantKey) -> None:
    headers = await user_headers(client, admin, "user-3")
    listed = (await client.get("/v1/auth/issuers", headers=admin.headers)).json()["data"]
    for issuer in listed:
        await client.delete(f"/v1/auth/issuers/{issuer['id']}", headers=admin.headers)
    refused = await client.get("/v1/auth/issuers", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["message"].endswith("unknown issuer")
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_wrong_secret_expired_and_wrong_audience_are_refused(
    client: httpx.AsyncClient, admin: TenantKey
) -> None:
    issuer, secret = await hs256_issuer(client, admin)
    cases = {
        "bad signature": hs256_token("x" * 43, issuer, "u"),
        "the token has expired": hs256_token(secret, issuer, "u", lifetime_s=-120),
        "wrong audience": hs256_token(secret, issuer, "u", audience="someone-else"),
        "unknown issuer": hs256_token(secret, issuer + "/other", "u"),
    }
    for reason, token in cases.items():
        answer = await client.get("/v1/jobs/x", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (reason, answer.text)
        assert answer.json()["message"] == f"sign-in token refused: {reason}", answer.text
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert AUDIENCE
