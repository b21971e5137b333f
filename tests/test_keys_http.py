"""API keys over HTTP: create per role, list without secrets, revoke, rotate with a grace
period, expiry, the address allow-list, and revocation seen by a second ingress within 1 s."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually

# Authenticated, and no such job: what a working key gets.
PROBE = f"/v1/jobs/{uuid.UUID(int=0)}"


@dataclass
class TwoIngresses:
    platform: Platform
    first: str
    second: str


@pytest.fixture(scope="module")
def ingresses(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoIngresses]:
    """Two ingress processes on the same services, behind a proxy at 127.0.0.1."""
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("keys"))
    trusted = {"AYUSH_TRUSTED_PROXIES": "127.0.0.1/32"}
    try:
        platform.start_ingress_with(trusted)
        first = platform.url
        platform.start_ingress_with(trusted)
        yield TwoIngresses(platform, first, platform.url)
    finally:
        platform.stop()


@pytest.fixture
async def http(ingresses: TwoIngresses) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingresses.first, timeout=30) as client:
        yield client


@pytest.fixture
async def admin(db: Database) -> TenantKey:
    return await make_tenant(db, admin=True)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def status_with(client: httpx.AsyncClient, key: str, **headers: str) -> int:
    return (await client.get(PROBE, headers={**bearer(key), **headers})).status_code


async def create(client: httpx.AsyncClient, by: TenantKey, **body: object) -> httpx.Response:
    return await client.post("/v1/keys", json=body, headers=by.headers)


async def test_keys_of_every_role_are_created_and_listed_without_secrets(
    http: httpx.AsyncClient, admin: TenantKey
) -> None:
    made = {}
    for role, scopes in (("admin", []), ("developer", []), ("service", ["jobs:read"]),
                         ("auditor", [])):  # fmt: skip
        answer = await create(http, admin, role=role, scopes=scopes, name=f"the {role}")
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["key"].startswith(body["prefix"]) and body["role"] == role
        assert await status_with(http, body["key"]) == 404
        made[body["id"]] = body["key"]
    # What each role may do: an auditor reads keys but makes none; a service key only jobs.
    listing = (await http.get("/v1/keys", headers=admin.headers)).json()
    by_id = {k["id"]: k for k in listing["data"]}
    assert set(made) <= set(by_id)
    text = str(listing)
    for secret in made.values():
        assert secret not in text and secret[12:] not in text
    assert all("key" not in k and "key_hash" not in k for k in listing["data"])
    for key_id, secret in made.items():
        role = by_id[key_id]["role"]
        reads = await http.get("/v1/keys", headers=bearer(secret))
        assert reads.status_code == (200 if role in ("admin", "auditor") else 403), role
        writes = await http.post("/v1/keys", json={"role": "auditor"}, headers=bearer(secret))
        assert writes.status_code == (201 if role == "admin" else 403), role
    one = (await http.get(f"/v1/keys/{key_id}", headers=admin.headers)).json()
    assert one["id"] == key_id and "key" not in one


async def test_list_pages_with_a_cursor(http: httpx.AsyncClient, admin: TenantKey) -> None:
    for _ in range(3):
        assert (await create(http, admin, role="auditor")).status_code == 201
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await http.get("/v1/keys", params=params, headers=admin.headers)).json()
        seen += [k["id"] for k in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(seen) == 4 and len(set(seen)) == 4  # the admin key and three more


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "root"}, "role"),
        ({"role": "service"}, "scopes"),
        ({"role": "service", "scopes": ["jobs:fly"]}, "scopes"),
        ({"role": "developer", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"role": "developer", "allowed_ips": ["10.0.0.0/33"]}, "allowed_ips"),
        ({"role": "developer", "allowed_ips": ["example.com"]}, "allowed_ips"),
    ],
)
async def test_invalid_key_requests_name_the_field(
    http: httpx.AsyncClient, admin: TenantKey, body: dict[str, object], field: str
) -> None:
    answer = await create(http, admin, **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"][0]["field"].startswith(field)


async def test_a_key_cannot_mint_or_rotate_a_stronger_key(
    http: httpx.AsyncClient, admin: TenantKey
) -> None:
    minter = (await create(http, admin, role="service", scopes=["keys:write", "jobs:read"])).json()
    as_minter = TenantKey(admin.tenant_id, minter["key"], bearer(minter["key"]))
    assert (await create(http, as_minter, role="admin")).status_code == 403
    assert (await create(http, as_minter, role="developer")).status_code == 403
    same = await create(http, as_minter, role="service", scopes=["jobs:read"])
    assert same.status_code == 201, same.text
    stronger = (await http.get("/v1/keys", headers=admin.headers)).json()["data"]
    admin_id = next(k["id"] for k in stronger if k["role"] == "admin")
    refused = await http.post(f"/v1/keys/{admin_id}/rotate", headers=as_minter.headers)
    assert refused.status_code == 403
    assert await status_with(http, admin.key) == 404  # the admin key still works


async def test_revoked_key_is_refused_on_its_next_call_and_revoking_twice_is_fine(
    http: httpx.AsyncClient, admin: TenantKey
) -> None:
    made = (await create(http, admin, role="developer")).json()
    assert await status_with(http, made["key"]) == 404  # cached now
    for _ in range(2):
        gone = await http.delete(f"/v1/keys/{made['id']}", headers=admin.headers)
        assert gone.status_code == 204
    assert await status_with(http, made["key"]) == 401
    listed = (await http.get(f"/v1/keys/{made['id']}", headers=admin.headers)).json()
    assert listed["revoked_at"] is not None
    missing = await http.delete(f"/v1/keys/{uuid.uuid4()}", headers=admin.headers)
    assert missing.status_code == 404


async def test_rotated_key_keeps_the_old_secret_for_the_grace_period_only(
    http: httpx.AsyncClient, admin: TenantKey
) -> None:
    made = (await create(http, admin, role="developer")).json()
    old = made["key"]
    assert await status_with(http, old) == 404
    rotated = await http.post(
        f"/v1/keys/{made['id']}/rotate", json={"grace_s": 2}, headers=admin.headers
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["key"]
    assert new != old and rotated.json()["id"] == made["id"]
    assert await status_with(http, new) == 404
    assert await status_with(http, old) == 404  # within the grace period

    async def old_refused() -> bool:
        return await status_with(http, old) == 401

    await eventually(old_refused, 10, "the old secret to stop working after its grace")
    assert await status_with(http, new) == 404


async def test_rotation_without_grace_ends_the_old_secret_at_once(
    http: httpx.AsyncClient, admin: TenantKey
) -> None:
    made = (await create(http, admin, role="developer")).json()
    assert await status_with(http, made["key"]) == 404
    url = f"/v1/keys/{made['id']}/rotate"
    new = (await http.post(url, json={"grace_s": 0}, headers=admin.headers)).json()["key"]
    assert await status_with(http, made["key"]) == 401
    assert await status_with(http, new) == 404
    # No body at all means the default grace period.
    newer = await http.post(url, headers=admin.headers)
    assert newer.status_code == 201 and newer.json()["previous_valid_until"] is not None
    assert await status_with(http, new) == 404


async def test_expired_key_is_refused(http: httpx.AsyncClient, admin: TenantKey) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    made = (await create(http, admin, role="developer", expires_at=soon)).json()
    assert await status_with(http, made["key"]) == 404

    async def expired() -> bool:
        answer = await http.get(PROBE, headers=bearer(made["key"]))
        return answer.status_code == 401 and "expired" in answer.json()["message"]

    await eventually(expired, 10, "the key to expire")


async def test_key_used_outside_its_allowed_addresses_is_forbidden(
    http: httpx.AsyncClient, admin: TenantKey
) -> None:
    made = (await create(http, admin, role="developer", allowed_ips=["203.0.113.0/24"])).json()
    key = made["key"]
    assert made["allowed_ips"] == ["203.0.113.0/24"]
    # The peer (127.0.0.1) is a trusted proxy: the client is the first untrusted hop.
    assert await status_with(http, key, **{"X-Forwarded-For": "203.0.113.7"}) == 404
    assert await status_with(http, key, **{"X-Forwarded-For": "198.51.100.1"}) == 403
    # A client cannot hide behind a forged hop at the left: its proxy appended the real one.
    forged = "203.0.113.7, 198.51.100.1"
    assert await status_with(http, key, **{"X-Forwarded-For": forged}) == 403
    assert await status_with(http, key, **{"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}) == 404
    assert await status_with(http, key) == 403  # the proxy itself is not allowed
    assert await status_with(http, key, **{"X-Forwarded-For": "not-an-ip"}) == 403


async def test_last_used_is_recorded(http: httpx.AsyncClient, admin: TenantKey) -> None:
    made = (await create(http, admin, role="developer")).json()
    assert made["last_used_at"] is None
    assert await status_with(http, made["key"]) == 404

    async def used() -> str | None:
        view = (await http.get(f"/v1/keys/{made['id']}", headers=admin.headers)).json()
        return view["last_used_at"]

    assert await eventually(used, 10, "last_used_at to be written")


async def test_revocation_reaches_a_second_ingress_within_a_second(
    ingresses: TwoIngresses, admin: TenantKey
) -> None:
    async with (
        httpx.AsyncClient(base_url=ingresses.first, timeout=30) as first,
        httpx.AsyncClient(base_url=ingresses.second, timeout=30) as second,
    ):
        made = (await create(first, admin, role="developer")).json()
        key = made["key"]
        # Both processes hold the key in their caches (which alone would keep it for 10 s).
        assert await status_with(first, key) == 404
        assert await status_with(second, key) == 404
        assert (
            await first.delete(f"/v1/keys/{made['id']}", headers=admin.headers)
        ).status_code == 204
        revoked_at = time.monotonic()

        async def refused() -> bool:
            return await status_with(second, key) == 401

        await eventually(refused, 5, "the second ingress to refuse the revoked key")
        assert time.monotonic() - revoked_at < 1.0


async def test_forwarded_for_is_ignored_without_trusted_proxies(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The shared ingress trusts no proxy: a client's X-Forwarded-For changes nothing."""
    owner = await make_tenant(db, admin=True)
    made = (await create(client, owner, role="developer", allowed_ips=["203.0.113.7"])).json()
    assert made["allowed_ips"] == ["203.0.113.7/32"]
    assert await status_with(client, made["key"], **{"X-Forwarded-For": "203.0.113.7"}) == 403
    local = (await create(client, owner, role="developer", allowed_ips=["127.0.0.0/8"])).json()
    assert await status_with(client, local["key"], **{"X-Forwarded-For": "203.0.113.7"}) == 404
