"""Monthly budgets of tenants, keys and end users, and what each has spent this month.

A user's budget is stored under scope "user" and the user's derived id
(`schemas.ids.user_subject`); the tenant's default for users without one under
scope "users" and the tenant's id: one row, whatever the number of users.
"""

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
    # The scope's own budget; differs from monthly_usd for a user held to the default.
    own_usd: Decimal | None = None


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
    """The budget that applies and the spend; for a "user" scope, the tenant's default
    for users when the user has no budget of their own."""
    async with db.tenant_reads(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT monthly_usd FROM budgets WHERE scope = :scope "
                    "        AND scope_id = :scope_id AND tenant_id = :tenant), "
                    "       (SELECT spent_usd FROM budget_spend WHERE scope = :scope "
                    "        AND scope_id = :scope_id AND period = :period "
                    "        AND tenant_id = :tenant), "
                    "       (SELECT monthly_usd FROM budgets WHERE scope = 'users' "
                    "        AND scope_id = :tenant AND tenant_id = :tenant AND :scope = 'user')"
                ),
                {"scope": scope, "scope_id": scope_id, "period": period, "tenant": tenant_id},
            )
        ).one()
    own, spent, default = row
    return BudgetState(
        own if own is not None else default, spent if spent is not None else Decimal(0), own
    )


async def clear_budget(db: Database, scope: str, scope_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        await session.execute(
            text("DELETE FROM budgets WHERE scope = :scope AND scope_id = :scope_id"),
            {"scope": scope, "scope_id": scope_id},
        )


async def all_budgets(db: Database) -> list[tuple[uuid.UUID, str, uuid.UUID, Decimal]]:
    """(tenant, scope, scope id, monthly USD) of every budget set."""
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT tenant_id, scope, scope_id, monthly_usd FROM budgets")
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def key_in_tenant(db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    async with db.tenant_reads(tenant_id) as session:
        row = await session.execute(
            text("SELECT 1 FROM api_keys WHERE id = :k AND tenant_id = :t"),
            {"k": key_id, "t": tenant_id},
        )
        return row.first() is not None
