"""Sign-in tokens for tests: act as an end user of a tenant.

`user_headers(api, admin, "user-1")` registers (once per tenant and ingress) an HS256 token
issuer with the tenant's admin key and returns the `Authorization` header of a token for that
user; `role="admin"` (or developer, auditor) puts that value in the token's role claim.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
from joserfc import jwk, jwt

from tests.conftest import TenantKey

AUDIENCE = "ayush-tests"
ROLE_CLAIM = "role"
# (ingress base URL, tenant id) -> (issuer, secret) registered there.
_REGISTERED: dict[tuple[str, str], tuple[str, str]] = {}


async def user_headers(
    api: httpx.AsyncClient, admin: TenantKey, user_id: str, role: str | None = None
) -> dict[str, str]:
    issuer, secret = await hs256_issuer(api, admin)
    return {"Authorization": f"Bearer {hs256_token(secret, issuer, user_id, role=role)}"}


async def hs256_issuer(api: httpx.AsyncClient, admin: TenantKey) -> tuple[str, str]:
    """The tenant's test issuer and its secret, registered with `admin` on first use."""
    cache_key = (str(api.base_url), str(admin.tenant_id))
    known = _REGISTERED.get(cache_key)
    if known is not None:
        return known
    issuer = f"https://sign-in.test/{admin.tenant_id}/{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32)
    answer = await api.post(
        "/v1/auth/issuers",
        headers=admin.headers,
        json={
            "issuer": issuer,
            "audience": AUDIENCE,
            "hs256_secret": secret,
            "role_claim": ROLE_CLAIM,
        },
    )
    assert answer.status_code == 201, f"registering a test issuer (admin key?): {answer.text}"
    _REGISTERED[cache_key] = (issuer, secret)
    return issuer, secret


def hs256_token(
    secret: str,
    issuer: str,
    user_id: str,
    *,
    role: str | None = None,
    audience: str | list[str] = AUDIENCE,
    lifetime_s: int = 600,
    **claims: Any,
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": issuer, "aud": audience, "sub": user_id, "iat": now, "exp": now + lifetime_s,
    }  # fmt: skip
    if role is not None:
        body[ROLE_CLAIM] = role
    body.update(claims)
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, body, jwk.OctKey.import_key(secret))
