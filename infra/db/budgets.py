"""Monthly budgets of tenants and keys, and what each has spent this month."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text

from infra.db.engine import Database


@dataclass(frozen=True)
class BudgetState:
    monthly_usd: Decimal | None
    spent_usd: Decimal


async def set_budget(
    db: Database, tenant_id: uuid.UUID, scope: str, scope_id: uuid.UUID, monthly_usd: Decimal
) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO budgets (scope, scope_id, tenant_id, monthly_usd, updated_at) "
                "VALUES (:scope, :scope_id, :tenant, :usd, now()) "
                "ON CONFLICT (scope, scope_id) DO UPDATE SET "
                "monthly_usd = excluded.monthly_usd, updated_at = now()"
            ),
            {"scope": scope, "scope_id": scope_id, "tenant": tenant_id, "usd": monthly_usd},
        )


async def budget_state(
    db: Database, tenant_id: uuid.UUID, scope: str, scope_id: uuid.UUID, period: str
) -> BudgetState:
    async with db.tenant_reads(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT monthly_usd FROM budgets WHERE scope = :scope "
                    "        AND scope_id = :scope_id AND tenant_id = :tenant), "
                    "       (SELECT spent_usd FROM budget_spend WHERE scope = :scope "
                    "        AND scope_id = :scope_id AND period = :period AND tenant_id = :tenant)"
                ),
                {"scope": scope, "scope_id": scope_id, "period": period, "tenant": tenant_id},
            )
        ).one()
    return BudgetState(row[0], row[1] if row[1] is not None else Decimal(0))


async def key_in_tenant(db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    async with db.tenant_reads(tenant_id) as session:
        row = await session.execute(
            text("SELECT 1 FROM api_keys WHERE id = :k AND tenant_id = :t"),
            {"k": key_id, "t": tenant_id},
        )
        return row.first() is not None
