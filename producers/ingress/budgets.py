"""Monthly budgets: PUT and GET for the tenant and for each API key."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from infra.db.budgets import budget_state, key_in_tenant, set_budget
from infra.db.tenants import KeyOwner
from infra.quota import Scope
from producers.ingress.admission import Admission, admission_dependency, rate_limited
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError
from schemas.usage import BudgetIn, BudgetView, current_period, period_reset

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])

Owner = Annotated[KeyOwner, Depends(rate_limited)]
Adm = Annotated[Admission, Depends(admission_dependency)]
Body = Annotated[BudgetIn, Depends(json_body(BudgetIn))]


@router.get("/tenant", response_model=BudgetView)
async def get_tenant_budget(owner: Owner, adm: Adm) -> BudgetView:
    _require_admin(owner)
    return await _view(adm, owner, Scope("tenant", owner.tenant_id))


@router.put("/tenant", response_model=BudgetView)
async def put_tenant_budget(body: Body, owner: Owner, adm: Adm) -> BudgetView:
    _require_admin(owner)
    return await _set(adm, owner, Scope("tenant", owner.tenant_id), body)


@router.get("/keys/{key_id}", response_model=BudgetView)
async def get_key_budget(key_id: uuid.UUID, owner: Owner, adm: Adm) -> BudgetView:
    await _require_key(adm, owner, key_id)
    return await _view(adm, owner, Scope("key", key_id))


@router.put("/keys/{key_id}", response_model=BudgetView)
async def put_key_budget(key_id: uuid.UUID, body: Body, owner: Owner, adm: Adm) -> BudgetView:
    # A key that could set its own budget could lift the limit put on it.
    _require_admin(owner, "only an admin key sets budgets, its own key's included")
    await _require_key(adm, owner, key_id)
    return await _set(adm, owner, Scope("key", key_id), body)


def _require_admin(
    owner: KeyOwner, why: str = "only an admin key manages the tenant's budget"
) -> None:
    if not owner.is_admin:
        raise ApiError(403, "forbidden", why)


async def _require_key(adm: Admission, owner: KeyOwner, key_id: uuid.UUID) -> None:
    """Admins see every key of their tenant; other keys only themselves."""
    if key_id == owner.key_id:
        return
    if not owner.is_admin:
        raise ApiError(403, "forbidden", "a key that is not admin sees only its own budget")
    if not await key_in_tenant(adm.db, owner.tenant_id, key_id):
        raise ApiError(404, "not_found", f"no API key {key_id}")


async def _set(adm: Admission, owner: KeyOwner, scope: Scope, body: BudgetIn) -> BudgetView:
    await set_budget(adm.db, owner.tenant_id, scope.kind, scope.id, body.monthly_usd)
    period = current_period()
    state = await budget_state(adm.db, scope.kind, scope.id, period)
    # Redis may not know this month's spend yet (nothing settled since it
    # started): teach it before the limit applies.
    await adm.quotas.settle(owner.tenant_id, [], [(scope, period, state.spent_usd)])
    await adm.quotas.set_limit(owner.tenant_id, scope, body.monthly_usd)
    return await _view(adm, owner, scope)


async def _view(adm: Admission, owner: KeyOwner, scope: Scope) -> BudgetView:
    period = current_period()
    state = await budget_state(adm.db, scope.kind, scope.id, period)
    return BudgetView(
        scope="tenant" if scope.kind == "tenant" else "key",
        api_key_id=scope.id if scope.kind == "key" else None,
        monthly_usd=state.monthly_usd,
        spent_usd=state.spent_usd,
        reserved_usd=await adm.quotas.reserved(owner.tenant_id, scope, period),
        period=period,
        resets_at=period_reset(period),
    )
