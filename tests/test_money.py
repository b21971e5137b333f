"""Money reads as money: every USD amount that leaves the platform is plain decimal text."""

from __future__ import annotations

import asyncio
import csv
import importlib
import inspect
import io
import pkgutil
import re
import typing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import schemas
from consumers.groups.usage.group import usage_row
from infra.db import usage as usage_store
from infra.db.engine import Database
from infra.db.tenants import create_api_key, ensure_tenant
from infra.kafka.codec import encode
from infra.local_stack import ServiceAddresses
from schemas.money import usd_text
from tests.conftest import Running, TenantKey
from tests.harness import sse_events, unique
from tests.test_cli import ayush
from tests.test_jobs_http import chat, submit, wait_finished
from tests.usage_tools import usage_event

PLAIN = re.compile(r"-?\d+\.\d{8}")
# Amounts whose str() has an exponent, and the text each must read as.
AMOUNTS = {
    "0E-8": "0.00000000",
    "0": "0.00000000",
    "-0E-8": "0.00000000",
    "1E-8": "0.00000001",
    "0.000001": "0.00000100",
    "1E+3": "1000.00000000",
    "12345678.9": "12345678.90000000",
    "1E+30": "1000000000000000000000000000000.00000000",
}


@pytest.mark.parametrize(("amount", "text"), AMOUNTS.items())
def test_usd_text_has_no_exponent(amount: str, text: str) -> None:
    assert usd_text(Decimal(amount)) == text


def _money_fields() -> list[tuple[type[BaseModel], str]]:
    found = []
    for info in pkgutil.iter_modules(schemas.__path__):
        module = importlib.import_module(f"schemas.{info.name}")
        for _, model in inspect.getmembers(module, inspect.isclass):
            if not issubclass(model, BaseModel) or model.__module__ != module.__name__:
                continue
            for name, field in model.model_fields.items():
                if _holds_decimal(field.annotation):
                    found.append((model, name))
    return found


def _holds_decimal(annotation: Any) -> bool:
    """Decimal, or a union or Annotated type with a Decimal in it."""
    return annotation is Decimal or any(_holds_decimal(a) for a in typing.get_args(annotation))


def test_every_money_field_of_the_contract_serializes_plain() -> None:
    """Every Decimal field of every schema model: tiny, zero and large amounts, in JSON and
    in Python dumps (which FastAPI would otherwise turn into floats)."""
    fields = _money_fields()
    assert len(fields) >= 10, fields  # usage rows, budgets, job views and events
    for model, name in fields:
        for amount, text in AMOUNTS.items():
            value = model.model_construct(**{name: Decimal(amount)})
            dumped = value.model_dump(mode="json", include={name})[name]
            assert dumped == text, (model.__name__, name, amount, dumped)
            assert value.model_dump(include={name})[name] == text, (model.__name__, name)


def _plain(value: object) -> bool:
    return isinstance(value, str) and PLAIN.fullmatch(value) is not None


async def test_job_document_shows_its_cost(client: httpx.AsyncClient, tenant: TenantKey) -> None:
    job_id = await submit(client, tenant, chat("what does it cost"))
    job = await wait_finished(client, tenant, job_id)
    assert job["status"] == "succeeded"
    assert job["cost_usd"] == "0.00000000"  # local-echo is free; once "0E-8", or absent

    stream = await client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)
    result = next(e for e in sse_events(stream.text) if e["event"] == "result")
    assert result["data"]["cost_usd"] == "0.00000000"

    queued = (await client.post("/v1/jobs", json=chat("x"), headers=tenant.headers)).json()
    early = (await client.get(f"/v1/jobs/{queued['id']}", headers=tenant.headers)).json()
    assert "cost_usd" in early and (early["cost_usd"] is None or _plain(early["cost_usd"]))


async def test_gateway_cost_header_is_plain(client: httpx.AsyncClient, tenant: TenantKey) -> None:
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}
    response = await client.post("/v1/chat/completions", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["X-Ayush-Cost-Usd"] == "0.00000000"


async def test_usage_budgets_csv_and_cli_show_plain_amounts(
    client: httpx.AsyncClient, running: Running, services: ServiceAddresses, db: Database
) -> None:
    name = unique("money-")
    owner, _ = await ensure_tenant(db, name)
    _, plaintext = await create_api_key(db, owner.id, role="admin")
    headers = {"Authorization": f"Bearer {plaintext}"}
    costs = {"free-model": "0", "tiny-model": "0.00000001", "large-model": "12345678.9"}
    events = [usage_event(owner.id, model=model, cost=cost) for model, cost in costs.items()]
    await usage_store.record_batch(db, [usage_row(encode(e)[1]) for e in events])
    expected = {
        "free-model": "0.00000000",
        "tiny-model": "0.00000001",
        "large-model": "12345678.90000000",
    }

    report = await client.get("/v1/usage", params={"group_by": "model"}, headers=headers)
    assert report.status_code == 200, report.text
    rows = {r["group"]: r["cost_usd"] for r in report.json()["rows"]}
    assert rows == expected
    assert report.json()["total"]["cost_usd"] == "12345678.90000001"

    as_csv = await client.get(
        "/v1/usage", params={"group_by": "model", "format": "csv"}, headers=headers
    )
    lines = list(csv.reader(io.StringIO(as_csv.text)))[1:]
    assert {line[0]: line[4] for line in lines} == {**expected, "total": "12345678.90000001"}

    budget = await client.get("/v1/budgets/tenant", headers=headers)
    view = budget.json()
    assert view["spent_usd"] == "12345678.90000001" and view["reserved_usd"] == "0.00000000"
    for given, shown in (("1E+5", "100000.00000000"), ("0.00000001", "0.00000001")):
        put = await client.put("/v1/budgets/tenant", json={"monthly_usd": given}, headers=headers)
        assert put.status_code == 200, put.text
        assert put.json()["monthly_usd"] == shown

    month = datetime.now(UTC).strftime("%Y-%m")
    shown_cli = await asyncio.to_thread(
        ayush, services, "usage", "report", "--tenant", name, "--month", month
    )
    assert shown_cli.returncode == 0, shown_cli.stderr
    for model, text in expected.items():
        assert any(model in line and text in line for line in shown_cli.stdout.splitlines())


def _no_exponent(document: Any) -> None:
    """Every `*_usd` value in a JSON document is plain decimal text."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key.endswith("_usd") and value is not None:
                assert _plain(value), (key, value)
            _no_exponent(value)
    elif isinstance(document, list):
        for item in document:
            _no_exponent(item)


async def test_a_fresh_budget_view_has_no_exponent(client: httpx.AsyncClient, db: Database) -> None:
    owner, _ = await ensure_tenant(db, unique("fresh-"))
    _, plaintext = await create_api_key(db, owner.id, role="admin")
    headers = {"Authorization": f"Bearer {plaintext}"}
    view = (await client.get("/v1/budgets/tenant", headers=headers)).json()
    _no_exponent(view)
    assert view["spent_usd"] == "0.00000000" and view["reserved_usd"] == "0.00000000"
