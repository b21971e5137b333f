"""Usage, budgets and rate limits through HTTP, with two ingress processes."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from schemas.usage import period_reset
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, early_in_a_minute, eventually
from tests.usage_tools import publish_all, tenant_totals, usage_event

RPM = 30

pytestmark = pytest.mark.timeout(300)  # four process starts for the module: slow on a busy machine


@dataclass
class TwoIngresses:
    platform: Platform
    settings: Any
    urls: list[str]


@pytest.fixture(scope="module")
def stack(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoIngresses]:
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("usage-http"))
    platform.env["AYUSH_RATE_LIMIT_REQUESTS_PER_MIN"] = str(RPM)
    try:
        urls = []
        for _ in range(2):
            platform.start_ingress()
            urls.append(platform.url)
        platform.start_worker("model-calls")
        platform.start_worker("usage")
        yield TwoIngresses(platform, settings, urls)
    finally:
        platform.stop()


@pytest.fixture
async def clients(stack: TwoIngresses) -> AsyncIterator[list[httpx.AsyncClient]]:
    a = httpx.AsyncClient(base_url=stack.urls[0], timeout=30)
    b = httpx.AsyncClient(base_url=stack.urls[1], timeout=30)
    try:
        yield [a, b]
    finally:
        await a.aclose()
        await b.aclose()


def chat(content: str = "hello", model: str = "claude-fake", **extra: object) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def test_two_ingress_processes_share_one_rate_limit(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db)

    await eventually(early_in_a_minute, 20, "the start of a minute")
    responses = await asyncio.gather(
        *(clients[i % 2].get("/v1/usage", headers=tenant.headers) for i in range(RPM + 10))
    )
    codes = [r.status_code for r in responses]
    assert codes.count(200) == RPM and codes.count(429) == 10
    for response in responses:
        assert int(response.headers["X-RateLimit-Limit"]) == RPM
        assert 0 < int(response.headers["X-RateLimit-Reset"]) <= 60
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.is_success)
    assert remaining == list(range(RPM))  # every admitted request counted once, across both


async def test_budget_spent_mid_stream_refuses_the_next_request_with_402(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    me = clients[0]
    own = await me.get("/v1/budgets/tenant", headers=tenant.headers)
    assert own.status_code == 200 and own.json()["monthly_usd"] is None
    key_id = await own_key_id(me, tenant)
    put = await me.put(
        f"/v1/budgets/keys/{key_id}", json={"monthly_usd": "0.0002"}, headers=tenant.headers
    )
    assert put.status_code == 200, put.text
    # Each job reserves about $0.0001 and costs $0.000048 (claude-fake: 1 token in, 3 out).
    accepted = 0
    while True:
        response = await clients[accepted % 2].post(
            "/v1/jobs", json=chat(max_tokens=5), headers=tenant.headers
        )
        if response.status_code == 402:
            break
        assert response.status_code == 202, response.text
        accepted += 1
        assert accepted <= 4, "the budget never ran out"
        await settled(me, tenant, key_id, Decimal("0.000048") * accepted)
    assert accepted == 3
    body = response.json()
    assert body["error"] == "budget_exceeded"
    assert body["budget"]["scope"] == "key" and body["budget"]["api_key_id"] == key_id
    assert body["budget"]["monthly_usd"] == "0.00020000"
    period = datetime.now(UTC).strftime("%Y-%m")
    assert body["budget"]["resets_at"] == period_reset(period).isoformat()
    assert "resets" in body["message"]
    view = (await me.get(f"/v1/budgets/keys/{key_id}", headers=tenant.headers)).json()
    assert Decimal(view["spent_usd"]) == Decimal("0.000144")
    assert Decimal(view["reserved_usd"]) == 0


async def own_key_id(client: httpx.AsyncClient, tenant: TenantKey) -> str:
    """The key's id, as its usage names it (the tenant has only this key)."""
    response = await client.post("/v1/jobs", json=chat(model="local-echo"), headers=tenant.headers)
    assert response.status_code == 202

    async def row() -> str | None:
        report = await client.get("/v1/usage", params={"group_by": "key"}, headers=tenant.headers)
        rows = report.json()["rows"]
        return rows[0]["group"] if rows else None

    return await eventually(row, 30, "the key's usage row")


async def settled(
    client: httpx.AsyncClient, tenant: TenantKey, key_id: str, spent: Decimal
) -> None:
    async def probe() -> bool:
        view = (await client.get(f"/v1/budgets/keys/{key_id}", headers=tenant.headers)).json()
        return Decimal(view["spent_usd"]) == spent and Decimal(view["reserved_usd"]) == 0

    await eventually(probe, 30, f"spend {spent} settled")


async def test_concurrent_requests_on_two_ingresses_never_overbook_a_budget(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)
    put = await clients[0].put(
        "/v1/budgets/tenant", json={"monthly_usd": "0.0003"}, headers=tenant.headers
    )
    assert put.status_code == 200, put.text
    # Slow jobs: nothing settles during the burst, so only reservations count.
    body = chat(model="claude-fake@delay=3000", max_tokens=5)
    responses = await asyncio.gather(
        *(clients[i % 2].post("/v1/jobs", json=body, headers=tenant.headers) for i in range(12))
    )
    codes = sorted(r.status_code for r in responses)
    # Each reserves 8 tokens in (the message and its framing) and 5 out: $0.000099.
    assert codes == [202] * 3 + [402] * 9  # 3 x $0.000099 fit in $0.0003, a 4th does not
    refused = next(r for r in responses if r.status_code == 402).json()
    assert refused["budget"]["scope"] == "tenant"
    view = (await clients[1].get("/v1/budgets/tenant", headers=tenant.headers)).json()
    assert Decimal(view["reserved_usd"]) == Decimal("0.000297")


async def test_budget_endpoints_check_who_asks_and_what(
    clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    client = clients[0]
    bad = await client.put("/v1/budgets/tenant", json={"monthly_usd": "-1"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "monthly_usd"
    ok = await client.put(
        "/v1/budgets/tenant", json={"monthly_usd": "25.00"}, headers=admin.headers
    )
    view = ok.json()
    assert ok.status_code == 200 and Decimal(view["monthly_usd"]) == Decimal("25")
    assert view["scope"] == "tenant" and view["spent_usd"] == "0.00000000"
    assert view["resets_at"].startswith(period_reset(view["period"]).strftime("%Y-%m-%d"))

    key, plaintext = await create_api_key(db, uuid.UUID(str(admin.tenant_id)))
    standard = {"Authorization": f"Bearer {plaintext}"}
    assert (await client.put("/v1/budgets/tenant", json={"monthly_usd": "1"},
                             headers=standard)).status_code == 403  # fmt: skip
    # Reading it is budgets:read (producers.ingress.access): a developer key may, a
    # service key only with that scope.
    assert (await client.get("/v1/budgets/tenant", headers=standard)).status_code == 200
    _, service = await create_api_key(db, uuid.UUID(str(admin.tenant_id)), role="service")
    refused = await client.get("/v1/budgets/tenant", headers={"Authorization": f"Bearer {service}"})
    assert refused.status_code == 403
    # A key that is not admin may not set a budget, not even its own: it could lift it.
    own = await client.put(
        f"/v1/budgets/keys/{key.id}", json={"monthly_usd": "500"}, headers=standard
    )
    assert own.status_code == 403 and own.json()["error"] == "forbidden"
    assert "admin" in own.json()["message"]
    by_admin = await client.put(
        f"/v1/budgets/keys/{key.id}", json={"monthly_usd": "5"}, headers=admin.headers
    )
    assert by_admin.status_code == 200 and by_admin.json()["api_key_id"] == str(key.id)
    seen = (await client.get(f"/v1/budgets/keys/{key.id}", headers=standard)).json()
    assert Decimal(seen["monthly_usd"]) == 5  # the key still sees its own budget
    other, _ = await create_api_key(db, uuid.UUID(str(admin.tenant_id)))
    assert (await client.get(f"/v1/budgets/keys/{other.id}",
                             headers=standard)).status_code == 403  # fmt: skip
    stranger = await make_tenant(db, admin=True)
    assert (await client.get(f"/v1/budgets/keys/{key.id}",
                             headers=stranger.headers)).status_code == 404  # fmt: skip


async def test_usage_api_groups_and_scopes_by_key(
    stack: TwoIngresses, clients: list[httpx.AsyncClient], db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    tid = uuid.UUID(str(admin.tenant_id))
    mine, mine_plain = await create_api_key(db, tid)
    other, _ = await create_api_key(db, tid)
    events = [
        usage_event(tid, key_id=mine.id, user_id="ann", model="gpt-fake", cost="0.001"),
        usage_event(tid, key_id=mine.id, user_id="bob", model="claude-fake", cost="0.002"),
        usage_event(tid, key_id=other.id, user_id="ann", model="gpt-fake", cost="0.004"),
    ]
    publisher = Publisher(stack.settings)
    await publisher.start()
    try:
        await publish_all(publisher, events)
    finally:
        await publisher.stop()

    async def counted() -> bool:
        return (await tenant_totals(db, tid))[0] == 3

    await eventually(counted, 30, "three usage events counted")
    client = clients[1]

    async def report(headers: dict[str, str], **params: str) -> dict[str, Any]:
        response = await client.get("/v1/usage", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    by_model = await report(admin.headers, group_by="model")
    assert {r["group"]: r["cost_usd"] for r in by_model["rows"]} == {
        "claude-fake": "0.00200000", "gpt-fake": "0.00500000",
    }  # fmt: skip
    assert by_model["total"]["events"] == 3 and by_model["total"]["cost_usd"] == "0.00700000"
    assert {"from", "to", "group_by"} <= set(by_model)
    by_user = await report(admin.headers, group_by="user")
    assert [(r["group"], r["events"]) for r in by_user["rows"]] == [("ann", 2), ("bob", 1)]
    today = datetime.now(UTC).date().isoformat()
    by_day = await report(admin.headers, group_by="day", **{"from": today, "to": today})
    assert [r["group"] for r in by_day["rows"]] == [today]
    own = await report({"Authorization": f"Bearer {mine_plain}"}, group_by="key")
    assert [r["group"] for r in own["rows"]] == [str(mine.id)]
    assert own["total"]["cost_usd"] == "0.00300000"

    as_csv = await client.get(
        "/v1/usage", params={"group_by": "model", "format": "csv"}, headers=admin.headers
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["model", "events", "input_tokens", "output_tokens", "cost_usd"]
    assert rows[-1][0] == "total" and Decimal(rows[-1][4]) == Decimal("0.007")
    wrong = await client.get("/v1/usage", params={"group_by": "planet"}, headers=admin.headers)
    assert wrong.status_code == 422 and wrong.json()["details"][0]["field"] == "group_by"
    backwards = await client.get(
        "/v1/usage", params={"from": "2026-11-10", "to": "2026-11-01"}, headers=admin.headers
    )
    assert backwards.status_code == 422 and backwards.json()["details"][0]["field"] == "to"


async def test_usage_csv_export_neutralises_formula_cells(
    stack: TwoIngresses, clients: list[httpx.AsyncClient], db: Database
) -> None:
    """A caller-chosen user id never runs as a formula in the spreadsheet that opens the CSV."""
    admin = await make_tenant(db, admin=True)
    tid = uuid.UUID(str(admin.tenant_id))
    attacks = ['=HYPERLINK("http://x.invalid","y")', "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"]
    publisher = Publisher(stack.settings)
    await publisher.start()
    try:
        await publish_all(publisher, [usage_event(tid, user_id=a, cost="0.001") for a in attacks])
    finally:
        await publisher.stop()

    async def counted() -> bool:
        return (await tenant_totals(db, tid))[0] == len(attacks)

    await eventually(counted, 30, "the usage events counted")
    response = await clients[0].get(
        "/v1/usage", params={"group_by": "user", "format": "csv"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    users = [row[0] for row in rows[1:-1]]
    assert sorted(users) == sorted("'" + a for a in attacks)
    assert rows[-1][0] == "total" and Decimal(rows[-1][4]) == Decimal("0.006")
