"""The usage projection's batch write: new events counted once, whatever the mix."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from consumers.groups.usage.group import usage_row
from infra.db.engine import Database
from infra.db.usage import UsageRow, record_batch, spend_keys, spend_of
from infra.kafka.codec import encode
from schemas.ids import user_subject
from tests.conftest import make_tenant
from tests.usage_tools import claimed_count, tenant_totals, usage_event


async def tenant_rows(db: Database, count: int) -> tuple[uuid.UUID, list[UsageRow]]:
    tenant = uuid.UUID(str((await make_tenant(db)).tenant_id))
    events = [
        usage_event(tenant, user_id=f"u{i % 2}", input_tokens=i, output_tokens=1, cost="0.00000003")
        for i in range(count)
    ]
    return tenant, [usage_row(encode(e)[1]) for e in events]


async def test_a_batch_partly_counted_before_adds_only_its_new_events(db: Database) -> None:
    tenant, rows = await tenant_rows(db, 10)
    assert await record_batch(db, rows[:4]) == 4
    # Old ids (one spelled in capitals), new ids, and new ids twice in one batch.
    again = [{**rows[0], "id": rows[0]["id"].upper()}, rows[1], *rows[4:], rows[9]]
    again.append({**rows[8], "id": rows[8]["id"].upper()})
    assert await record_batch(db, again) == 6  # type: ignore[arg-type]
    assert await record_batch(db, rows) == 0
    assert await tenant_totals(db, tenant) == (10, 45, 10, Decimal("0.00000030"))
    assert await claimed_count(db, {uuid.UUID(r["id"]) for r in rows}) == 10


async def test_two_workers_writing_overlapping_batches_count_each_event_once(
    db: Database,
) -> None:
    tenant, rows = await tenant_rows(db, 400)
    # As after a rebalance: two members hold the same events for a moment.
    counted = await asyncio.gather(
        record_batch(db, rows[:300]), record_batch(db, rows[100:]), record_batch(db, rows[::7])
    )
    assert sum(counted) == 400
    assert await tenant_totals(db, tenant) == (400, sum(range(400)), 400, Decimal("0.000012"))


@pytest.mark.parametrize("cost", ["NaN", "Infinity", "lots"])
async def test_a_cost_that_is_not_an_amount_fails_the_batch_and_counts_nothing(
    db: Database, cost: str
) -> None:
    tenant, rows = await tenant_rows(db, 3)
    rows[1]["cost_usd"] = cost
    with pytest.raises((ValueError, ArithmeticError)):
        await record_batch(db, rows)
    assert await tenant_totals(db, tenant) == (0, 0, 0, Decimal(0))
    assert await claimed_count(db, {uuid.UUID(r["id"]) for r in rows}) == 0


async def test_a_users_monthly_spend_is_counted_under_their_budget_id(db: Database) -> None:
    tenant, rows = await tenant_rows(db, 10)  # users u0 and u1, five events each
    rows.append({**rows[0], "id": str(uuid.uuid4()), "user_id": ""})  # no user: not a user's
    assert await record_batch(db, rows) == 11
    period = rows[0]["day"][:7]
    spends = await spend_of(db, spend_keys(rows))
    by_scope = {(s.scope, s.scope_id): s.spent_usd for s in spends}
    assert by_scope[("user", user_subject(tenant, "u0"))] == Decimal("0.00000015")
    assert by_scope[("user", user_subject(tenant, "u1"))] == Decimal("0.00000015")
    assert by_scope[("tenant", tenant)] == Decimal("0.00000033")
    assert len(by_scope) == 3 and {s.period for s in spends} == {period}
