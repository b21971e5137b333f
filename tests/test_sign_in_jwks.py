"""Sign-in tokens checked with an issuer's published keys (JWKS): RSA, EC P-256, Ed25519,
rotation at the issuer, the refusals (alg none, algorithm confusion, expired, not yet valid,
wrong audience) and the address policy over the JWKS URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwk, jwt
from joserfc.errors import SecurityWarning

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.jwks import FakeJwks
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually, unique
from tests.sign_in import hs256_token

AUDIENCE = "my-app"


@pytest.fixture(scope="module")
def jwks() -> Iterator[FakeJwks]:
    with FakeJwks() as server:
        yield server


@pytest.fixture(scope="module")
def ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("sign-in"))
    # The fake issuer listens on loopback, which the outbound policy refuses by default.
    platform.env.update({"AYUSH_CONNECTOR_ALLOW": "127.0.0.1", "AYUSH_JWKS_REFETCH_S": "1"})
    try:
        platform.start_ingress()
        yield platform
    finally:
        platform.stop()


@pytest.fixture
async def api(ingress: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=30) as http:
        yield http


@pytest.fixture
async def admin(db: Database) -> TenantKey:
    return await make_tenant(db, admin=True)


def claims(issuer: str, user: str = "user-1", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "aud": AUDIENCE, "sub": user, "iat": now, "exp": now + 600, **extra}


def sign(key: jwk.Key, alg: str, body: dict[str, Any]) -> str:
    with warnings.catch_warnings():  # "EdDSA" is deprecated by name (RFC 9864), still issued
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode({"alg": alg, "kid": key.kid}, body, key, algorithms=[alg])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def register(
    api: httpx.AsyncClient, admin: TenantKey, issuer: str, **body: Any
) -> httpx.Response:
    body.setdefault("audience", AUDIENCE)
    return await api.post(
        "/v1/auth/issuers", json={"issuer": issuer, **body}, headers=admin.headers
    )


async def refusal(api: httpx.AsyncClient, token: str) -> str:
    answer = await api.get(f"/v1/jobs/{uuid.uuid4()}", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    message: str = answer.json()["message"]
    return message.removeprefix("sign-in token refused: ")


async def job_user(api: httpx.AsyncClient, token: str, user: str) -> str:
    """The user a job created with `token` is recorded for."""
    body = {
        "kind": "chat", "model": "local-echo", "user_id": user,
        "messages": [{"role": "user", "content": "hi"}],
    }  # fmt: skip
    created = await api.post("/v1/jobs", json=body, headers=bearer(token))
    assert created.status_code == 202, created.text
    seen = await api.get(f"/v1/jobs/{created.json()['id']}", headers=bearer(token))
    assert seen.status_code == 200, seen.text
    return str(seen.json()["user_id"])


@pytest.mark.parametrize(
    ("kind", "alg"),
    [
        ("RSA", "RS256"),
        ("EC", "ES256"),
        ("OKP", "EdDSA"),
        ("OKP", "Ed25519"),
    ],
)
async def test_tokens_signed_with_published_keys_act_as_the_user(
    api: httpx.AsyncClient, admin: TenantKey, jwks: FakeJwks, kind: str, alg: str
) -> None:
    key: jwk.Key
    if kind == "RSA":
        key = jwk.RSAKey.generate_key(2048, parameters={"kid": "k1"})
    elif kind == "EC":
        key = jwk.ECKey.generate_key("P-256", parameters={"kid": "k1"})
    else:
        key = jwk.OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})
    issuer = f"https://{unique('idp')}.test/"
    url = jwks.publish(unique("set"), key.as_dict(private=False))
    assert (await register(api, admin, issuer, jwks_url=url)).status_code == 201
    token = sign(key, alg, claims(issuer))
    assert await job_user(api, token, "user-1") == "user-1"


async def test_rotation_at_the_issuer_needs_one_refetch(
    api: httpx.AsyncClient, admin: TenantKey, jwks: FakeJwks
) -> None:
    old = jwk.RSAKey.generate_key(2048, parameters={"kid": "old"})
    new = jwk.RSAKey.generate_key(2048, parameters={"kid": "new"})
    name, issuer = unique("set"), f"https://{unique('idp')}.test/"
    url = jwks.publish(name, old.as_dict(private=False))
    assert (await register(api, admin, issuer, jwks_url=url)).status_code == 201
    assert await job_user(api, sign(old, "RS256", claims(issuer)), "user-1") == "user-1"
    assert jwks.fetches[name] == 1
    jwks.publish(name, new.as_dict(private=False))  # the old key is withdrawn

    async def new_key_works() -> bool:
        answer = await api.get(
            "/v1/auth/issuers", headers=bearer(sign(new, "RS256", claims(issuer)))
        )
        return answer.status_code == 403  # signed in, as a user: not an admin route

    await eventually(new_key_works, timeout_s=20, what="the rotated key to be fetched")
    assert jwks.fetches[name] == 2
    assert "no key" in await refusal(api, sign(old, "RS256", claims(issuer)))


async def test_refused_tokens_say_why(
    api: httpx.AsyncClient, admin: TenantKey, jwks: FakeJwks
) -> None:
    key = jwk.RSAKey.generate_key(2048, parameters={"kid": "k1"})
    issuer = f"https://{unique('idp')}.test/"
    url = jwks.publish(unique("set"), key.as_dict(private=False))
    assert (await register(api, admin, issuer, jwks_url=url)).status_code == 201
    now = int(time.time())
    assert await refusal(api, sign(key, "RS256", claims(issuer, exp=now - 120))) == (
        "the token has expired"
    )
    assert await refusal(api, sign(key, "RS256", claims(issuer, nbf=now + 600))) == (
        "the token is not yet valid"
    )
    assert await refusal(api, sign(key, "RS256", claims(issuer, aud="another-app"))) == (
        "wrong audience"
    )
    assert await refusal(api, sign(key, "RS256", claims(issuer + "x"))) == "unknown issuer"
    stranger = jwk.RSAKey.generate_key(2048, parameters={"kid": "k1"})
    assert await refusal(api, sign(stranger, "RS256", claims(issuer))) == "bad signature"
    # A small clock skew is forgiven.
    assert await job_user(api, sign(key, "RS256", claims(issuer, "u", exp=now - 5)), "u") == "u"


async def test_alg_none_and_algorithm_confusion_are_refused(
    api: httpx.AsyncClient, admin: TenantKey, jwks: FakeJwks
) -> None:
    key = jwk.RSAKey.generate_key(2048, parameters={"kid": "k1"})
    issuer = f"https://{unique('idp')}.test/"
    url = jwks.publish(unique("set"), key.as_dict(private=False))
    assert (await register(api, admin, issuer, jwks_url=url)).status_code == 201
    payload = b64(json.dumps(claims(issuer)).encode())
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    unsigned = f"{none_header}.{payload}."
    assert await refusal(api, unsigned) == "the 'none' algorithm is not accepted"
    # HS256 "signed" with the RSA public key's PEM as the shared secret.
    pem = key.as_pem(private=False)
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'k1'}).encode())}.{payload}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{b64(mac)}"
    assert "HS256 is not accepted" in await refusal(api, confused)


async def test_supabase_tokens_work_with_only_jwks_or_only_the_legacy_secret(
    api: httpx.AsyncClient, db: Database, jwks: FakeJwks
) -> None:
    user = str(uuid.uuid4())
    # A project with asymmetric signing keys: only its JWKS URL is registered.
    with_keys, with_secret = await make_tenant(db, admin=True), await make_tenant(db, admin=True)
    key = jwk.ECKey.generate_key("P-256", parameters={"kid": "sb-1"})
    issuer = f"https://{unique('ref')}.supabase.co/auth/v1"
    url = jwks.publish(unique("sb"), key.as_dict(private=False))
    answer = await register(api, with_keys, issuer, audience="authenticated", jwks_url=url)
    assert answer.status_code == 201, answer.text
    body = {**claims(issuer, user, role="authenticated"), "aud": "authenticated"}
    assert await job_user(api, sign(key, "ES256", body), user) == user
    # A project on the legacy JWT secret: only the secret is registered.
    issuer = f"https://{unique('ref')}.supabase.co/auth/v1"
    secret = "super-secret-jwt-token-with-at-least-32-characters-long"
    answer = await register(api, with_secret, issuer, audience="authenticated", hs256_secret=secret)
    assert answer.status_code == 201, answer.text
    token = hs256_token(secret, issuer, user, audience="authenticated", role="authenticated")
    assert await job_user(api, token, user) == user


async def test_one_issuer_several_tenants_told_apart_by_audience(
    api: httpx.AsyncClient, db: Database, jwks: FakeJwks
) -> None:
    first, second = await make_tenant(db, admin=True), await make_tenant(db, admin=True)
    key = jwk.ECKey.generate_key("P-256", parameters={"kid": "k1"})
    issuer = f"https://{unique('idp')}.test/"
    url = jwks.publish(unique("set"), key.as_dict(private=False))
    assert (await register(api, first, issuer, audience="app-1", jwks_url=url)).status_code == 201
    assert (await register(api, second, issuer, audience="app-2", jwks_url=url)).status_code == 201
    token = sign(key, "ES256", {**claims(issuer), "aud": "app-2"})
    body = {"kind": "chat", "model": "local-echo", "messages": [{"role": "user", "content": "x"}]}
    created = await api.post("/v1/jobs", json=body, headers=bearer(token))
    assert created.status_code == 202, created.text
    job = f"/v1/jobs/{created.json()['id']}"
    assert (await api.get(job, headers=second.headers)).status_code == 200
    assert (await api.get(job, headers=first.headers)).status_code == 404
    # The same issuer and audience trusted by two tenants: nobody's user (once the brief
    # cache of registrations has expired).
    assert (await register(api, first, issuer, audience="app-2", jwks_url=url)).status_code == 201

    async def ambiguous() -> bool:
        answer = await api.get(job, headers=bearer(token))
        return answer.status_code == 401 and answer.json()["message"].endswith(
            "issuer and audience are registered by several tenants"
        )

    await eventually(ambiguous, timeout_s=30, what="the registrations' cache to expire")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/jwks.json",
        "http://10.1.2.3/jwks.json",
        "http://[::ffff:169.254.169.254]/jwks.json",
    ],
)
async def test_jwks_url_at_a_metadata_or_private_address_is_refused(
    api: httpx.AsyncClient, admin: TenantKey, url: str
) -> None:
    answer = await register(api, admin, "https://idp.test/", jwks_url=url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"][0]["field"] == "jwks_url"
