"""Budgets and rate limits per end user, with two ingress processes.

The user of a request is the `user_id` the API key's request names (or the OpenAI
`user`); a request naming none is held only to the tenant's and the key's limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, early_in_a_minute, eventually

pytestmark = pytest.mark.timeout(300)  # four process starts for the module

# Each slow job reserves 8 tokens in (the message and its framing) and 5 out: $0.000099.
ESTIMATE = Decimal("0.000099")


@dataclass
class TwoIngresses:
    platform: Platform
    urls: list[str]


@pytest.fixture(scope="module")
def stack(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoIngresses]:
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("user-limits"))
    try:
        yield TwoIngresses(platform, start_together(platform, ingresses=2))
    finally:
        platform.stop()


def start_together(platform: Platform, ingresses: int, ready_s: float = 240) -> list[str]:
    """Ingress processes and the model-calls and usage workers, started at once and
    waited for together: one after another, a busy machine takes minutes."""
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(ingresses)]
    procs = [platform.spawn("ingress", "ingress", "--port", url.rsplit(":", 1)[1]) for url in urls]
    workers = {group: platform.spawn(group, "worker", group) for group in ("model-calls", "usage")}
    waiting = set(urls) | set(workers)
    deadline = time.monotonic() + ready_s
    while waiting and time.monotonic() < deadline:
        for proc in [*procs, *workers.values()]:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} died:\n{proc.tail()}")
        for url in [u for u in waiting if u in urls]:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    waiting.discard(url)
        for group, proc in workers.items():
            if f"worker {group} ready" in proc.log.read_text(errors="replace"):
                waiting.discard(group)
        time.sleep(0.1)
    if waiting:
        raise RuntimeError(f"not ready after {ready_s} s: {sorted(waiting)}")
    return urls


@pytest.fixture
async def clients(stack: TwoIngresses) -> AsyncIterator[list[httpx.AsyncClient]]:
    a = httpx.AsyncClient(base_url=stack.urls[0], timeout=30)
    b = httpx.AsyncClient(base_url=stack.urls[1], timeout=30)
    try:
        yield [a, b]
    finally:
        await a.aclose()
        await b.aclose()


def job(user_id: str | None, model: str = "claude-fake@delay=3000") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 5,
    }
    if user_id is not None:
        body["user_id"] = user_id
    return body


async def put(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], tenant: TenantKey
) -> dict[str, Any]:
    response = await client.put(path, json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_user_budget_holds_under_concurrent_requests_on_two_ingresses(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    limit = Decimal("0.0003")
    await put(clients[0], "/v1/budgets/users/ann", {"monthly_usd": str(limit)}, tenant)

    # Slow jobs: nothing settles during the burst, so only reservations count.
    responses = await asyncio.gather(
        *(
            clients[i % 2].post("/v1/jobs", json=job("ann"), headers=tenant.headers)
            for i in range(50)
        )
    )
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 3 and codes.count(402) == 47, codes  # 3 x $0.000099 fit
    refused = next(r for r in responses if r.status_code == 402).json()
    assert refused["budget"]["scope"] == "user" and refused["budget"]["user_id"] == "ann"
    assert refused["budget"]["monthly_usd"] == "0.00030000"
    assert "user 'ann'" in refused["message"]
    view = (await clients[1].get("/v1/budgets/users/ann", headers=tenant.headers)).json()
    spent, reserved = Decimal(view["spent_usd"]), Decimal(view["reserved_usd"])
    assert spent + reserved <= limit + ESTIMATE
    assert reserved == 3 * ESTIMATE
    assert view["user_id"] == "ann" and Decimal(view["own_usd"]) == limit
    # Another user of the same key is not held to ann's budget.
    other = await clients[0].post("/v1/jobs", json=job("bob"), headers=tenant.headers)
    assert other.status_code == 202, other.text


async def test_default_user_budget_applies_until_an_override_and_again_after_delete(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    a, b = clients
    assert (await a.get("/v1/budgets/users/default", headers=tenant.headers)).json() == {
        "monthly_usd": None
    }
    await put(a, "/v1/budgets/users/default", {"monthly_usd": "0"}, tenant)

    refused = await b.post("/v1/jobs", json=job("carl", "local-echo"), headers=tenant.headers)
    assert refused.status_code == 402, refused.text
    budget = refused.json()["budget"]
    assert (budget["scope"], budget["user_id"], budget["api_key_id"]) == ("user", "carl", None)
    assert Decimal(budget["monthly_usd"]) == 0
    anonymous = await b.post("/v1/jobs", json=job(None, "local-echo"), headers=tenant.headers)
    assert anonymous.status_code == 202, anonymous.text  # no user: no user budget

    view = await put(a, "/v1/budgets/users/dana", {"monthly_usd": "1.00"}, tenant)
    assert Decimal(view["monthly_usd"]) == 1 and Decimal(view["own_usd"]) == 1
    admitted = await b.post("/v1/jobs", json=job("dana", "local-echo"), headers=tenant.headers)
    assert admitted.status_code == 202, admitted.text
    still = await b.post("/v1/jobs", json=job("carl", "local-echo"), headers=tenant.headers)
    assert still.status_code == 402

    deleted = await a.delete("/v1/budgets/users/dana", headers=tenant.headers)
    assert deleted.status_code == 204
    view = (await a.get("/v1/budgets/users/dana", headers=tenant.headers)).json()
    assert Decimal(view["monthly_usd"]) == 0 and view["own_usd"] is None
    back = await b.post("/v1/jobs", json=job("dana", "local-echo"), headers=tenant.headers)
    assert back.status_code == 402 and back.json()["budget"]["user_id"] == "dana"

    # A default raised once applies to every user at once.
    await put(a, "/v1/budgets/users/default", {"monthly_usd": "5"}, tenant)
    for user in ("carl", "dana", "erin"):
        ok = await b.post("/v1/jobs", json=job(user, "local-echo"), headers=tenant.headers)
        assert ok.status_code == 202, ok.text


async def test_user_rpm_refuses_the_21st_request_of_a_minute_and_spares_other_users(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    view = await put(clients[0], "/v1/ratelimits/users/default", {"rpm": 20}, tenant)
    assert view == {"user_id": None, "rpm": 20, "tpm": None, "own": {"rpm": 20, "tpm": None}}

    await eventually(early_in_a_minute, 20, "the start of a minute")
    responses = await asyncio.gather(
        *(
            clients[i % 2].post("/v1/jobs", json=job("eve", "local-echo"), headers=tenant.headers)
            for i in range(21)
        )
    )
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 20 and codes.count(429) == 1, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert "requests per minute limit of this user" in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    other = await clients[1].post("/v1/jobs", json=job("fay", "local-echo"), headers=tenant.headers)
    assert other.status_code == 202, other.text

    # An override lifts one user above the default.
    own = await put(clients[0], "/v1/ratelimits/users/eve", {"rpm": 25}, tenant)
    assert own["rpm"] == 25 and own["own"] == {"rpm": 25, "tpm": None}
    again = await clients[0].post("/v1/jobs", json=job("eve", "local-echo"), headers=tenant.headers)
    assert again.status_code == 202, again.text
    deleted = await clients[1].delete("/v1/ratelimits/users/eve", headers=tenant.headers)
    assert deleted.status_code == 204
    view = (await clients[1].get("/v1/ratelimits/users/eve", headers=tenant.headers)).json()
    assert view["rpm"] == 20 and view["own"] == {"rpm": None, "tpm": None}
    back = await clients[0].post("/v1/jobs", json=job("eve", "local-echo"), headers=tenant.headers)
    assert back.status_code == 429


async def test_usage_settles_the_users_hold_and_reports_per_user(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    a, b = clients
    await put(a, "/v1/budgets/users/default", {"monthly_usd": "1"}, tenant)
    response = await b.post("/v1/jobs", json=job("hal", "claude-fake"), headers=tenant.headers)
    assert response.status_code == 202, response.text

    async def settled() -> dict[str, Any] | None:
        view = (await a.get("/v1/budgets/users/hal", headers=tenant.headers)).json()
        done = Decimal(view["spent_usd"]) > 0 and Decimal(view["reserved_usd"]) == 0
        return view if done else None

    view = await eventually(settled, 30, "hal's hold settled into spend")
    assert view["own_usd"] is None and Decimal(view["monthly_usd"]) == 1
    report = await a.get("/v1/usage", params={"group_by": "user"}, headers=tenant.headers)
    assert report.status_code == 200, report.text
    rows = {r["group"]: r for r in report.json()["rows"]}
    assert set(rows) == {"hal"}
    assert Decimal(rows["hal"]["cost_usd"]) == Decimal(view["spent_usd"])


async def test_user_limit_endpoints_check_input_and_who_asks(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    developer = await make_tenant(db)
    a = clients[0]
    bad = await a.put(
        "/v1/budgets/users/default", json={"monthly_usd": "-1"}, headers=admin.headers
    )
    assert bad.status_code == 422 and "monthly_usd" in bad.text
    bad = await a.put("/v1/ratelimits/users/ann", json={"rpm": 0}, headers=admin.headers)
    assert bad.status_code == 422 and "rpm" in bad.text
    long_id = "u" * 201
    bad = await a.put(
        f"/v1/budgets/users/{long_id}", json={"monthly_usd": "1"}, headers=admin.headers
    )
    assert bad.status_code == 422 and "user_id" in bad.text
    ok = await a.get(f"/v1/budgets/users/{'u' * 200}", headers=admin.headers)
    assert ok.status_code == 200 and ok.json()["user_id"] == "u" * 200
    refused = await a.put(
        "/v1/budgets/users/default", json={"monthly_usd": "1"}, headers=developer.headers
    )
    assert refused.status_code == 403
    refused = await a.put("/v1/ratelimits/users/ann", json={"rpm": 5}, headers=developer.headers)
    assert refused.status_code == 403


async def test_openai_user_field_is_held_to_that_users_budget_and_rate(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    a, b = clients
    await put(a, "/v1/budgets/users/ivy", {"monthly_usd": "0"}, tenant)
    await put(a, "/v1/ratelimits/users/jo", {"rpm": 1}, tenant)
    chat = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}

    refused = await b.post(
        "/v1/chat/completions", json=chat | {"user": "ivy"}, headers=tenant.headers
    )
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["budget"]["user_id"] == "ivy"
    await eventually(early_in_a_minute, 20, "the start of a minute")
    first = await b.post("/v1/chat/completions", json=chat | {"user": "jo"}, headers=tenant.headers)
    assert first.status_code == 200, first.text
    second = await a.post(
        "/v1/chat/completions", json=chat | {"user": "jo"}, headers=tenant.headers
    )
    assert second.status_code == 429 and "of this user" in second.text
