"""What a rule starts is held to the tenant's limits: a window of its own and its budget."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from consumers.groups.webhook_router.admission import Limits, admit_action, admit_job
from infra.budget_holds import BudgetHolds, Scope
from infra.local_stack import ServiceAddresses
from infra.pricing import Price, PriceTable
from infra.rate_windows import RateWindows
from infra.routing.catalog import ModelCatalog
from infra.routing.config import RoutingConfig
from infra.settings import Settings
from schemas.ids import uuid7
from schemas.jobs import ChatJob
from schemas.usage import current_period
from tests.harness import early_in_a_minute, unique


@pytest.fixture
async def limits(services: ServiceAddresses) -> AsyncIterator[Limits]:
    settings = services.apply(
        Settings(
            topic_prefix=unique("rules-"),
            rate_limit_requests_per_min=3,
            rate_limit_tokens_per_min=50_000,
        )
    )
    holds, windows = BudgetHolds(settings, 4), RateWindows(settings, 4)
    prices = PriceTable({"gpt-fake": Price(Decimal("1.00"), Decimal("2.00"))})
    try:
        yield Limits(settings, holds, windows, ModelCatalog(RoutingConfig(), prices))
    finally:
        await holds.close()
        await windows.close()


def _job(text: str, max_tokens: int = 10) -> ChatJob:
    message = {"role": "user", "content": text}
    return ChatJob.model_validate(
        {"model": "gpt-fake", "max_tokens": max_tokens, "messages": [message]}
    )


async def test_rule_actions_and_jobs_share_the_tenants_requests_per_minute(
    limits: Limits,
) -> None:
    await early_in_a_minute()
    tenant = uuid.uuid4()
    assert await admit_action(limits, tenant) is None
    assert await admit_job(limits, tenant, uuid7(), _job("hello")) is None
    assert await admit_action(limits, tenant) is None
    refused = await admit_action(limits, tenant)
    assert refused is not None and refused.startswith("rate_limited: the requests per minute")
    # Another tenant has its own window.
    assert await admit_action(limits, uuid.uuid4()) is None


async def test_a_rule_job_counts_all_its_text_against_the_tokens_per_minute(
    limits: Limits,
) -> None:
    await early_in_a_minute()
    refused = await admit_job(limits, uuid.uuid4(), uuid7(), _job("word " * 60_000))
    assert refused is not None and refused.startswith("rate_limited: the tokens per minute")


async def test_a_rule_job_reserves_its_cost_on_the_tenants_budget(limits: Limits) -> None:
    tenant = uuid.uuid4()
    await limits.holds.set_limit(tenant, Scope("tenant", tenant), Decimal("0.0001"))
    job_id = uuid7()
    # About 12 tokens in and 10 out: $0.000032 of the $0.0001.
    assert await admit_job(limits, tenant, job_id, _job("hello")) is None
    reserved = await limits.holds.reserved(tenant, Scope("tenant", tenant), current_period())
    assert Decimal("0.00002") < reserved < Decimal("0.0001")
    # A redelivered webhook asks again for the same job: its reservation stands, once.
    assert await admit_job(limits, tenant, job_id, _job("hello")) is None
    again = await limits.holds.reserved(tenant, Scope("tenant", tenant), current_period())
    assert again == reserved
    refused = await admit_job(limits, tenant, uuid7(), _job("hello", max_tokens=100))
    assert refused is not None and refused.startswith("budget_exceeded: the tenant's")
