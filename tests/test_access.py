"""Who may call what: the role rules of `may`, and every route with every role against a running
ingress, as the access table (and the README's table made from it) says.

The walk is driven by `access.TABLE`, so a route added with its row is walked too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from infra.db.engine import Database
from infra.db.tenants import create_api_key, ensure_tenant
from producers.ingress.access import (
    ADMINISTRATION,
    ANY,
    AUDITOR,
    NOT_FOR_USERS,
    SOCKETS,
    TABLE,
    USER,
    allows,
    may,
    permissions,
)
from producers.ingress.caller import Role
from tests.conftest import Running, TenantKey
from tests.harness import unique

NONE: frozenset[str] = frozenset()
BAD_BODY = b'{"not json'
_PARAM = re.compile(r"\{(\w+)(:\w+)?\}")


# --- the role rules -------------------------------------------------------------------------


def test_admin_may_do_everything() -> None:
    assert all(may("admin", NONE, p) for p in permissions())


def test_developer_is_refused_administration_unless_scoped() -> None:
    for permission in permissions():
        assert may("developer", NONE, permission) == (permission not in ADMINISTRATION)
    for permission in ADMINISTRATION:
        assert may("developer", frozenset({permission}), permission)
        assert not may("developer", frozenset({"jobs:write"}), permission)


def test_service_may_only_what_its_scopes_name() -> None:
    for permission in permissions():
        assert not may("service", NONE, permission)
        assert may("service", frozenset({permission}), permission)
        others = permissions() - {permission}
        assert not may("service", others, permission)


def test_auditor_only_reads() -> None:
    for permission in permissions():
        assert may("auditor", NONE, permission) == (permission in AUDITOR)
    assert all(p.endswith(":read") for p in AUDITOR)
    assert not may("auditor", NONE, "jobs:write")


def test_user_may_only_their_own_work() -> None:
    for permission in permissions():
        assert may("user", NONE, permission) == (permission in USER)
    assert not USER & ADMINISTRATION
    assert not may("user", NONE, "keys:write")


def test_a_user_is_refused_the_tenant_wide_routes_their_role_could_read() -> None:
    for method, path in NOT_FOR_USERS:
        assert may("user", NONE, TABLE[(method, path)])
        assert not allows("user", NONE, method, path)
        assert allows("developer", NONE, method, path)


def test_every_caller_may_call_the_open_routes() -> None:
    roles: tuple[Role, ...] = ("admin", "developer", "service", "auditor", "user")
    assert all(may(role, NONE, ANY) for role in roles)


# --- every route with every role ---------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """One caller of the walk: a role, and whether its key holds each route's permission."""

    name: str
    role: Role
    scoped: bool = False

    def scopes(self, permission: str) -> frozenset[str]:
        return frozenset({permission}) if self.scoped else NONE


WHO = [
    Who("admin", "admin"),
    Who("developer", "developer"),
    Who("service-unscoped", "service"),
    Who("service-scoped", "service", scoped=True),
    Who("auditor", "auditor"),
    Who("user", "user"),
]


@dataclass(frozen=True)
class Credential:
    headers: dict[str, str]
    key_id: str | None = None  # a key's own id fills `{key_id}`: a key may read its own


Credentials = Callable[[str], Credential]  # permission -> what the caller calls with


@pytest.fixture(scope="module")
async def callers(db: Database, running: Running) -> dict[str, Credentials]:
    """One tenant; one key per role, and one service key per permission, made once."""
    tenant, _ = await ensure_tenant(db, unique("access-"))

    async def key(role: Role, scopes: tuple[str, ...] = ()) -> Credential:
        row, plaintext = await create_api_key(db, tenant.id, role=role, scopes=scopes)
        return Credential({"Authorization": f"Bearer {plaintext}"}, str(row.id))

    roles: list[Role] = ["admin", "developer", "service", "auditor"]
    plain = dict(zip(roles, await asyncio.gather(*(key(r) for r in roles)), strict=True))
    wanted = sorted(permissions())
    scoped = dict(
        zip(wanted, await asyncio.gather(*(key("service", (p,)) for p in wanted)), strict=True)
    )
    found: dict[str, Credentials] = {
        "admin": lambda _: plain["admin"],
        "developer": lambda _: plain["developer"],
        "service-unscoped": lambda _: plain["service"],
        "service-scoped": lambda p: scoped.get(p, plain["service"]),
        "auditor": lambda _: plain["auditor"],
    }
    if importlib.util.find_spec("tests.sign_in") is not None:
        sign_in = importlib.import_module("tests.sign_in")
        admin = plain["admin"]
        owner = TenantKey(tenant.id, admin.headers["Authorization"].split()[1], admin.headers)
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as api:
            user = Credential(await sign_in.user_headers(api, owner, unique("person-")))
        found["user"] = lambda _: user
    return found


def placeholder_path(path: str, own_key: str | None) -> str:
    """The path with every parameter filled: a model name, the caller's own key, or a uuid."""

    def fill(match: re.Match[str]) -> str:
        if match.group(1) == "model":
            return "no-such-model"
        if match.group(1) == "key_id" and own_key:
            return own_key
        return str(uuid.uuid4())

    return _PARAM.sub(fill, path)


async def call(
    http: httpx.AsyncClient, method: str, path: str, who: Credential, body: bytes | None
) -> tuple[int, Any]:
    """Status and JSON body (or None); an event stream is closed after its headers."""
    extra = {"Content-Type": "application/json"} if body is not None else {}
    request = http.build_request(
        method,
        placeholder_path(path, who.key_id),
        headers={**who.headers, **extra},
        content=body,
    )
    response = await http.send(request, stream=True)
    try:
        if response.headers.get("content-type", "").startswith("application/json"):
            await response.aread()
            return response.status_code, response.json()
        return response.status_code, None
    finally:
        await response.aclose()


def forbidden(body: Any) -> bool:
    """Our error shape, OpenAI's on the OpenAI-compatible routes, or Anthropic's on its."""
    if not isinstance(body, dict):
        return False
    error = body.get("error")
    if isinstance(error, dict) and body.get("type") == "error":
        return error.get("type") == "permission_error"
    return error == "forbidden" or (isinstance(error, dict) and error.get("code") == "forbidden")


async def walk(
    running: Running, check: Callable[[str, str, str], Awaitable[str | None]]
) -> list[str]:
    """Run `check(method, path, permission)` on every route at once; the failures it names."""
    # A WebSocket's handshake is checked by its own tests (tests/test_live_socket.py).
    routes = [(route, perm) for route, perm in TABLE.items() if route not in SOCKETS]
    found = await asyncio.gather(*(check(m, p, perm) for (m, p), perm in routes))
    return [f for f in found if f]


@pytest.mark.parametrize("who", WHO, ids=[w.name for w in WHO])
async def test_every_route_answers_each_role_as_the_table_says(
    who: Who, callers: dict[str, Credentials], running: Running
) -> None:
    if who.name not in callers:
        pytest.skip("sign-in tokens are not available to the tests yet")
    credential = callers[who.name]
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:

        async def check(method: str, path: str, permission: str) -> str | None:
            if allows(who.role, who.scopes(permission), method, path):
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                status, _ = await call(http, method, path, credential(permission), body)
                if status in (401, 403) or status >= 500:
                    return f"{method} {path}: allowed, answered {status}"
                return None
            # Refused, and refused before the (malformed) body is looked at.
            status, answer = await call(http, method, path, credential(permission), BAD_BODY)
            if status != 403 or not forbidden(answer):
                return f"{method} {path}: refused, answered {status} {answer}"
            return None

        failures = await walk(running, check)
    assert not failures, "\n".join(failures)


async def test_every_route_refuses_a_caller_without_credentials_before_its_body(
    running: Running,
) -> None:
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:

        async def check(method: str, path: str, _: str) -> str | None:
            status, _answer = await call(http, method, path, Credential({}), BAD_BODY)
            return None if status == 401 else f"{method} {path}: answered {status}"

        failures = await walk(running, check)
    assert not failures, "\n".join(failures)
