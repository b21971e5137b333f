"""Browsers: CORS answers for global and per-tenant origins, on two ingresses."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.errors import TransientError
from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from infra.settings import Settings
from producers.ingress.app import create_app
from producers.ingress.cors import AllowedOrigins
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually, unique

GLOBAL = "https://app.example.com"

pytestmark = pytest.mark.timeout(300)  # two ingress starts: slow on a busy machine


@pytest.fixture(scope="module")
def ingresses(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("cors"))
    platform.env["AYUSH_CORS_ORIGINS"] = f"{GLOBAL}, http://localhost:5173"
    platform.env["AYUSH_CORS_REFRESH_S"] = "0.5"
    platform.env["AYUSH_CORS_MAX_AGE_S"] = "300"
    try:
        yield start_ingresses(platform, 2)
    finally:
        platform.stop()


def start_ingresses(platform: Platform, count: int, deadline_s: float = 180) -> list[str]:
    """Several ingresses started side by side (each takes long to start on a busy machine)."""
    ports = [free_port() for _ in range(count)]
    procs = [platform.spawn("ingress", "ingress", "--port", str(port)) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    waiting = dict(zip(urls, procs, strict=True))
    deadline = time.monotonic() + deadline_s
    while waiting and time.monotonic() < deadline:
        for url, proc in list(waiting.items()):
            if not proc.alive():
                raise RuntimeError(f"ingress died:\n{proc.tail()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    del waiting[url]
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    if waiting:
        raise RuntimeError(f"ingress not ready: {list(waiting)}")
    return urls


@pytest.fixture
async def clients(ingresses: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    made = [httpx.AsyncClient(base_url=url, timeout=30) for url in ingresses]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


def preflight(origin: str, method: str = "POST", headers: str | None = None) -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return asked


def origin_of(tenant: TenantKey, origin: str) -> dict[str, str]:
    return {**tenant.headers, "Origin": origin}


def site() -> str:
    return f"https://{unique('site-')}.example.org"


async def put_origins(
    client: httpx.AsyncClient, admin: TenantKey, origins: list[str]
) -> httpx.Response:
    return await client.put(
        "/v1/tenant/settings", json={"cors_origins": origins}, headers=admin.headers
    )


async def test_preflight_from_a_global_origin_names_methods_headers_and_max_age(
    clients: list[httpx.AsyncClient],
) -> None:
    asked = "Authorization, Content-Type, Idempotency-Key, X-Stainless-OS"
    response = await clients[0].options("/v1/jobs", headers=preflight(GLOBAL, headers=asked))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == GLOBAL
    assert response.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "x-stainless-os"} <= allowed
    assert response.headers["access-control-max-age"] == "300"
    assert "origin" in response.headers["vary"].lower()


async def test_preflight_from_a_refused_origin_gets_no_allow_origin(
    clients: list[httpx.AsyncClient],
) -> None:
    for origin in (site(), f"{GLOBAL}.evil.example", "null", GLOBAL.replace("https", "http")):
        response = await clients[0].options("/v1/jobs", headers=preflight(origin))
        assert response.status_code == 403, origin
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-methods" not in response.headers


async def test_preflight_from_a_tenants_origin_is_answered_by_every_ingress_after_its_put(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    origin = site()
    assert (await clients[1].options("/v1/jobs", headers=preflight(origin))).status_code == 403
    response = await put_origins(clients[0], admin, [origin.upper()])
    assert response.status_code == 200, response.text
    assert response.json()["cors_origins"] == [origin]  # as a browser spells it

    # The ingress that served the change applies it at once; the other within its refresh.
    served = await clients[0].options("/v1/jobs", headers=preflight(origin))
    assert served.headers.get("access-control-allow-origin") == origin

    async def other_ingress_allows() -> httpx.Response | None:
        answer = await clients[1].options("/v1/jobs", headers=preflight(origin))
        return answer if answer.status_code == 200 else None

    answer = await eventually(other_ingress_allows, timeout_s=10, what="the other ingress")
    assert answer.headers["access-control-allow-origin"] == origin
    # And taken back: the list emptied, the origin is refused again.
    assert (await put_origins(clients[0], admin, [])).json()["cors_origins"] == []

    async def other_ingress_refuses() -> bool:
        answer = await clients[1].options("/v1/jobs", headers=preflight(origin))
        return answer.status_code == 403

    await eventually(other_ingress_refuses, timeout_s=10, what="the origin refused again")


async def test_a_tenants_origin_opens_only_that_tenants_answers(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    other = await make_tenant(db)
    origin = site()
    assert (await put_origins(clients[0], admin, [origin])).status_code == 200
    _, own_key = await create_api_key(db, admin.tenant_id, role="developer")  # type: ignore[arg-type]
    own = TenantKey(admin.tenant_id, own_key, {"Authorization": f"Bearer {own_key}"})

    mine = await clients[0].get(f"/v1/jobs/{uuid.uuid4()}", headers=origin_of(own, origin))
    assert mine.status_code == 404
    assert mine.headers["access-control-allow-origin"] == origin
    assert mine.headers["access-control-allow-credentials"] == "true"
    exposed = mine.headers["access-control-expose-headers"].lower()
    assert "x-ratelimit-remaining" in exposed and "retry-after" in exposed
    assert "origin" in mine.headers["vary"].lower()

    # Another tenant's key from the same page: the browser must not let the page read it.
    theirs = await clients[0].get(f"/v1/jobs/{uuid.uuid4()}", headers=origin_of(other, origin))
    assert theirs.status_code == 404
    assert "access-control-allow-origin" not in theirs.headers
    assert "access-control-allow-credentials" not in theirs.headers
    assert "origin" in theirs.headers["vary"].lower()
    # A refusal by role still reaches the tenant's page, so it can show why.
    refused = await clients[0].put(
        "/v1/tenant/settings", json={"cors_origins": []}, headers=origin_of(own, origin)
    )
    assert refused.status_code == 403
    assert refused.headers["access-control-allow-origin"] == origin


async def test_an_unauthenticated_answer_carries_only_a_global_origin(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    origin = site()
    assert (await put_origins(clients[0], admin, [origin])).status_code == 200
    for client in clients:
        global_page = await client.post("/v1/jobs", json={}, headers={"Origin": GLOBAL})
        assert global_page.status_code == 401
        assert global_page.headers["access-control-allow-origin"] == GLOBAL
        tenant_page = await client.post("/v1/jobs", json={}, headers={"Origin": origin})
        assert tenant_page.status_code == 401
        assert "access-control-allow-origin" not in tenant_page.headers


async def test_any_origin_is_answered_with_a_literal_star_never_with_credentials(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    other = await make_tenant(db)
    assert (await put_origins(clients[0], admin, ["*"])).json()["cors_origins"] == ["*"]
    try:
        origin = site()
        answer = await clients[0].get(f"/v1/jobs/{uuid.uuid4()}", headers=origin_of(admin, origin))
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer.headers
        # A listed origin is still named, with credentials.
        listed = await clients[0].get(f"/v1/jobs/{uuid.uuid4()}", headers=origin_of(admin, GLOBAL))
        assert listed.headers["access-control-allow-origin"] == GLOBAL
        # Another tenant's answers stay closed to the page.
        closed = await clients[0].get(f"/v1/jobs/{uuid.uuid4()}", headers=origin_of(other, origin))
        assert "access-control-allow-origin" not in closed.headers
        asked = await clients[0].options("/v1/jobs", headers=preflight(origin))
        assert asked.status_code == 200
        assert asked.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in asked.headers
    finally:
        assert (await put_origins(clients[0], admin, [])).status_code == 200


async def test_a_global_star_is_answered_without_credentials() -> None:
    app = create_app(Settings(cors_origins="*"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        asked = await client.options("/v1/jobs", headers=preflight(site()))
        assert asked.status_code == 200
        assert asked.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in asked.headers
        answer = await client.get("/healthz", headers={"Origin": site()})
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer.headers


async def test_an_event_stream_carries_the_cors_headers(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db)
    body: dict[str, Any] = {
        "kind": "chat",
        "model": "local-echo",
        "messages": [{"role": "user", "content": "hi"}],
    }
    submitted = await clients[0].post("/v1/jobs", json=body, headers=tenant.headers)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    async with clients[0].stream(
        "GET", f"/v1/jobs/{job_id}/events", headers=origin_of(tenant, GLOBAL)
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["access-control-allow-origin"] == GLOBAL
        assert "x-ratelimit-remaining" in stream.headers["access-control-expose-headers"].lower()


async def test_tenant_settings_refuse_what_is_not_an_origin_naming_cors_origins(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    for bad in (
        ["https://app.example.com/path"],
        ["app.example.com"],
        ["https://user@app.example.com"],
        ["https://app.example.com?x=1"],
        ["*", "https://app.example.com"],
        "https://app.example.com",
        [f"https://{i}.example.com" for i in range(101)],
    ):
        response = await clients[0].put(
            "/v1/tenant/settings", json={"cors_origins": bad}, headers=admin.headers
        )
        assert response.status_code == 422, (bad, response.text)
        fields = [d["field"] for d in response.json()["details"]]
        assert fields and all(f.startswith("cors_origins") for f in fields), fields
    unknown = await clients[0].put(
        "/v1/tenant/settings", json={"colour": "blue"}, headers=admin.headers
    )
    assert unknown.status_code == 422
    # Nothing was written.
    shown = await clients[0].get("/v1/tenant/settings", headers=admin.headers)
    assert shown.json() == {"cors_origins": [], "response_cache": False, "semantic_cache": False}


async def test_a_put_changes_the_fields_it_names_and_keeps_the_others(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    cached = await clients[0].put(
        "/v1/tenant/settings", json={"response_cache": True}, headers=admin.headers
    )
    assert cached.json() == {"cors_origins": [], "response_cache": True, "semantic_cache": False}
    origins = await put_origins(clients[0], admin, ["http://localhost:3000", "https://a.example"])
    assert origins.json() == {
        "cors_origins": ["http://localhost:3000", "https://a.example"],
        "response_cache": True,
        "semantic_cache": False,
    }
    shown = await clients[1].get("/v1/tenant/settings", headers=admin.headers)
    assert shown.json() == origins.json()


async def test_only_an_admin_changes_tenant_settings(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    headers: dict[str, dict[str, str]] = {}
    for role in ("developer", "service", "auditor"):
        _, key = await create_api_key(db, admin.tenant_id, role=role)  # type: ignore[arg-type]
        headers[role] = {"Authorization": f"Bearer {key}"}
    for role, auth in headers.items():
        refused = await clients[0].put(
            "/v1/tenant/settings", json={"cors_origins": [site()]}, headers=auth
        )
        assert refused.status_code == 403, role
    assert (
        await clients[0].get("/v1/tenant/settings", headers=headers["auditor"])
    ).status_code == 200
    assert (
        await clients[0].get("/v1/tenant/settings", headers=headers["service"])
    ).status_code == 403
    shown = await clients[0].get("/v1/tenant/settings", headers=admin.headers)
    assert shown.json()["cors_origins"] == []


async def test_origins_stay_known_while_the_database_is_unreachable() -> None:
    tenant = uuid.uuid4()
    origin = site()
    now = [0.0]
    answers: list[dict[uuid.UUID, frozenset[str]] | TransientError] = [
        {tenant: frozenset({origin})},
        TransientError("connection refused"),
        {},
    ]

    async def load() -> dict[uuid.UUID, frozenset[str]]:
        answer = answers.pop(0)
        if isinstance(answer, TransientError):
            raise answer
        return answer

    origins = AllowedOrigins([GLOBAL], refresh_s=5, timer=lambda: now[0])
    origins.attach(load)
    assert await origins.for_preflight(origin) == "origin"
    assert await origins.for_request(origin, tenant) == "origin"
    assert await origins.for_request(origin, uuid.uuid4()) is None
    assert await origins.for_request(origin, None) is None
    now[0] = 6.0  # stale: the reload fails, the known origins stay
    assert await origins.for_preflight(origin) == "origin"
    assert len(answers) == 1
    assert await origins.for_preflight(origin) == "origin"  # no second try before the interval
    assert len(answers) == 1
    now[0] = 12.0  # the tenant took its origin back
    assert await origins.for_preflight(origin) is None
    assert await origins.for_preflight(GLOBAL) == "origin"
