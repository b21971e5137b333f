"""Monthly budgets: PUT and GET for the tenant and for each API key."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from infra.budget_holds import BudgetHolds, Scope
from infra.db.budgets import all_budgets, budget_state, set_budget
from infra.db.engine import Database
from producers.ingress.admission import Admission, admission_dependency, rate_limited
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.scope import require_key
from schemas.usage import BudgetIn, BudgetView, current_period, period_reset

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])

Owner = Annotated[Caller, Depends(rate_limited)]
Adm = Annotated[Admission, Depends(admission_dependency)]
Body = Annotated[BudgetIn, Depends(json_body(BudgetIn))]


@router.get("/tenant", response_model=BudgetView)
async def get_tenant_budget(caller: Owner, adm: Adm) -> BudgetView:
    # budgets:read, as the access table says: no role check of its own here.
    return await _view(adm, caller, Scope("tenant", caller.tenant_id))


@router.put("/tenant", response_model=BudgetView)
async def put_tenant_budget(body: Body, caller: Owner, adm: Adm) -> BudgetView:
    return await _set(adm, caller, Scope("tenant", caller.tenant_id), body)


@router.get("/keys/{key_id}", response_model=BudgetView)
async def get_key_budget(key_id: uuid.UUID, caller: Owner, adm: Adm) -> BudgetView:
    await require_key(adm.db, caller, key_id, "budget")
    return await _view(adm, caller, Scope("key", key_id))


@router.put("/keys/{key_id}", response_model=BudgetView)
async def put_key_budget(key_id: uuid.UUID, body: Body, caller: Owner, adm: Adm) -> BudgetView:
    # budgets:write is the tenant's administration (producers.ingress.access): a key
    # that could set its own budget could lift the limit put on it.
    await require_key(adm.db, caller, key_id, "budget")
    return await _set(adm, caller, Scope("key", key_id), body)


async def restore(db: Database, holds: BudgetHolds) -> None:
    """Rewrite Redis's copy of every budget (tenants', keys', users' and the users'
    default) from Postgres: Redis may have lost them, and a lost limit admits anything."""
    for tenant_id, scope, scope_id, monthly_usd in await all_budgets(db):
        await holds.set_limit(tenant_id, Scope(scope, scope_id), monthly_usd)


async def _set(adm: Admission, caller: Caller, scope: Scope, body: BudgetIn) -> BudgetView:
    await set_budget(adm.db, caller.tenant_id, scope.kind, scope.id, body.monthly_usd)
    period = current_period()
    state = await budget_state(adm.db, caller.tenant_id, scope.kind, scope.id, period)
    # Redis may not know this month's spend yet (nothing settled since it
    # started): teach it before the limit applies.
    await adm.holds.settle(caller.tenant_id, [], [(scope, period, state.spent_usd)])
    await adm.holds.set_limit(caller.tenant_id, scope, body.monthly_usd)
    return await _view(adm, caller, scope)


async def _view(adm: Admission, caller: Caller, scope: Scope) -> BudgetView:
    period = current_period()
    state = await budget_state(adm.db, caller.tenant_id, scope.kind, scope.id, period)
    return BudgetView(
        scope="tenant" if scope.kind == "tenant" else "key",
        api_key_id=scope.id if scope.kind == "key" else None,
        monthly_usd=state.monthly_usd,
        spent_usd=state.spent_usd,
        reserved_usd=await adm.holds.reserved(caller.tenant_id, scope, period),
        period=period,
        resets_at=period_reset(period),
    )
