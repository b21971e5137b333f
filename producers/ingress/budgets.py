"""Monthly budgets: PUT and GET for the tenant and for each API key."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from infra.db.budgets import budget_state, key_in_tenant, set_budget
from infra.quota import Scope
from producers.ingress.admission import Admission, admission_dependency, rate_limited
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from schemas.usage import BudgetIn, BudgetView, current_period, period_reset

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])

Owner = Annotated[Caller, Depends(rate_limited)]
Adm = Annotated[Admission, Depends(admission_dependency)]
Body = Annotated[BudgetIn, Depends(json_body(BudgetIn))]


@router.get("/tenant", response_model=BudgetView)
async def get_tenant_budget(caller: Owner, adm: Adm) -> BudgetView:
    _require_tenant_view(caller)
    return await _view(adm, caller, Scope("tenant", caller.tenant_id))


@router.put("/tenant", response_model=BudgetView)
async def put_tenant_budget(body: Body, caller: Owner, adm: Adm) -> BudgetView:
    return await _set(adm, caller, Scope("tenant", caller.tenant_id), body)


@router.get("/keys/{key_id}", response_model=BudgetView)
async def get_key_budget(key_id: uuid.UUID, caller: Owner, adm: Adm) -> BudgetView:
    await _require_key(adm, caller, key_id)
    return await _view(adm, caller, Scope("key", key_id))


@router.put("/keys/{key_id}", response_model=BudgetView)
async def put_key_budget(key_id: uuid.UUID, body: Body, caller: Owner, adm: Adm) -> BudgetView:
    # budgets:write is the tenant's administration (producers.ingress.access): a key
    # that could set its own budget could lift the limit put on it.
    await _require_key(adm, caller, key_id)
    return await _set(adm, caller, Scope("key", key_id), body)


def _require_tenant_view(caller: Caller) -> None:
    if not caller.sees_tenant:
        raise ApiError(403, "forbidden", "only an admin or auditor key sees the tenant's budget")


async def _require_key(adm: Admission, caller: Caller, key_id: uuid.UUID) -> None:
    """Admins and auditors see every key of their tenant; other keys only themselves."""
    if key_id == caller.key_id:
        return
    if not caller.sees_tenant:
        raise ApiError(403, "forbidden", "a key that is not admin sees only its own budget")
    if not await key_in_tenant(adm.db, caller.tenant_id, key_id):
        raise ApiError(404, "not_found", f"no API key {key_id}")


async def _set(adm: Admission, caller: Caller, scope: Scope, body: BudgetIn) -> BudgetView:
    await set_budget(adm.db, caller.tenant_id, scope.kind, scope.id, body.monthly_usd)
    period = current_period()
    state = await budget_state(adm.db, caller.tenant_id, scope.kind, scope.id, period)
    # Redis may not know this month's spend yet (nothing settled since it
    # started): teach it before the limit applies.
    await adm.quotas.settle(caller.tenant_id, [], [(scope, period, state.spent_usd)])
    await adm.quotas.set_limit(caller.tenant_id, scope, body.monthly_usd)
    return await _view(adm, caller, scope)


async def _view(adm: Admission, caller: Caller, scope: Scope) -> BudgetView:
    period = current_period()
    state = await budget_state(adm.db, caller.tenant_id, scope.kind, scope.id, period)
    return BudgetView(
        scope="tenant" if scope.kind == "tenant" else "key",
        api_key_id=scope.id if scope.kind == "key" else None,
        monthly_usd=state.monthly_usd,
        spent_usd=state.spent_usd,
        reserved_usd=await adm.quotas.reserved(caller.tenant_id, scope, period),
        period=period,
        resets_at=period_reset(period),
    )
