"""Limits per end user: a tenant's default monthly budget and rate limits for its users,
and a user's own where they differ.

The default is one row and one Redis key per tenant, consulted by the budget and rate
scripts (infra.budget_holds, infra.rate_windows) for a user without limits of their own,
so changing it applies to every user at once. A user's own budget or limits are stored
under the user's derived id (`user_subject`); the views show the plain user id.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Response

from infra.budget_holds import Scope
from infra.db.budgets import budget_state, clear_budget, set_budget
from infra.db.rate_limits import (
    DEFAULT_USER,
    UserLimits,
    clear_user_limits,
    set_user_limits,
    user_limits,
)
from infra.errors import TransientError
from infra.rate_windows import RateWindows
from producers.ingress.admission import Admission, admission_dependency, rate_limited
from producers.ingress.body import json_body
from producers.ingress.caller import Caller, user_subject
from producers.ingress.errors import unavailable
from schemas.usage import (
    BudgetIn,
    RateLimitIn,
    UserBudgetDefault,
    UserBudgetView,
    UserRateLimitView,
    current_period,
    period_reset,
)

budgets_router = APIRouter(prefix="/v1/budgets/users", tags=["budgets"])
ratelimits_router = APIRouter(prefix="/v1/ratelimits/users", tags=["rate limits"])

Owner = Annotated[Caller, Depends(rate_limited)]
Adm = Annotated[Admission, Depends(admission_dependency)]
UserId = Annotated[str, Path(min_length=1, max_length=200)]
Budget = Annotated[BudgetIn, Depends(json_body(BudgetIn))]
Limits = Annotated[RateLimitIn, Depends(json_body(RateLimitIn))]
T = TypeVar("T")


# Budgets ---------------------------------------------------------------------------------
# "default" is declared first: it is the tenant's default, not a user of that name.
@budgets_router.get("/default", response_model=UserBudgetDefault)
async def get_default_budget(caller: Owner, adm: Adm) -> UserBudgetDefault:
    state = await budget_state(
        adm.db, caller.tenant_id, "users", caller.tenant_id, current_period()
    )
    return UserBudgetDefault(monthly_usd=state.monthly_usd)


@budgets_router.put("/default", response_model=UserBudgetDefault)
async def put_default_budget(body: Budget, caller: Owner, adm: Adm) -> UserBudgetDefault:
    await set_budget(adm.db, caller.tenant_id, "users", caller.tenant_id, body.monthly_usd)
    await _redis(adm.holds.set_limit(caller.tenant_id, _default(caller), body.monthly_usd))
    return UserBudgetDefault(monthly_usd=body.monthly_usd)


@budgets_router.delete("/default", status_code=204)
async def delete_default_budget(caller: Owner, adm: Adm) -> Response:
    """No default: users without a budget of their own have none."""
    await clear_budget(adm.db, "users", caller.tenant_id)
    await _redis(adm.holds.clear_limit(caller.tenant_id, _default(caller)))
    return Response(status_code=204)


@budgets_router.get("/{user_id}", response_model=UserBudgetView)
async def get_user_budget(user_id: UserId, caller: Owner, adm: Adm) -> UserBudgetView:
    return await user_budget_view(adm, caller, user_id)


@budgets_router.put("/{user_id}", response_model=UserBudgetView)
async def put_user_budget(user_id: UserId, body: Budget, caller: Owner, adm: Adm) -> UserBudgetView:
    scope = _user(caller, user_id)
    await set_budget(adm.db, caller.tenant_id, scope.kind, scope.id, body.monthly_usd)
    period = current_period()
    state = await budget_state(adm.db, caller.tenant_id, scope.kind, scope.id, period)
    # Redis may not know this month's spend yet: teach it before the limit applies.
    await _redis(adm.holds.settle(caller.tenant_id, [], [(scope, period, state.spent_usd)]))
    await _redis(adm.holds.set_limit(caller.tenant_id, scope, body.monthly_usd))
    return await user_budget_view(adm, caller, user_id)


@budgets_router.delete("/{user_id}", status_code=204)
async def delete_user_budget(user_id: UserId, caller: Owner, adm: Adm) -> Response:
    """Back to the tenant's default for its users."""
    scope = _user(caller, user_id)
    await clear_budget(adm.db, scope.kind, scope.id)
    await _redis(adm.holds.clear_limit(caller.tenant_id, scope))
    return Response(status_code=204)


async def user_budget_view(adm: Admission, caller: Caller, user_id: str) -> UserBudgetView:
    scope = _user(caller, user_id)
    period = current_period()
    state = await budget_state(adm.db, caller.tenant_id, scope.kind, scope.id, period)
    return UserBudgetView(
        user_id=user_id,
        monthly_usd=state.monthly_usd,
        own_usd=state.own_usd,
        spent_usd=state.spent_usd,
        reserved_usd=await _redis(adm.holds.reserved(caller.tenant_id, scope, period)),
        period=period,
        resets_at=period_reset(period),
    )


# Rate limits -----------------------------------------------------------------------------
@ratelimits_router.get("/default", response_model=UserRateLimitView)
async def get_default_limits(caller: Owner, adm: Adm) -> UserRateLimitView:
    return await _limits_view(adm, caller, DEFAULT_USER)


@ratelimits_router.put("/default", response_model=UserRateLimitView)
async def put_default_limits(body: Limits, caller: Owner, adm: Adm) -> UserRateLimitView:
    return await _set_limits(adm, caller, DEFAULT_USER, body)


@ratelimits_router.delete("/default", status_code=204)
async def delete_default_limits(caller: Owner, adm: Adm) -> Response:
    """No default: users without limits of their own are held only to their key's."""
    return await _clear_limits(adm, caller, DEFAULT_USER)


@ratelimits_router.get("/{user_id}", response_model=UserRateLimitView)
async def get_user_limits(user_id: UserId, caller: Owner, adm: Adm) -> UserRateLimitView:
    return await _limits_view(adm, caller, user_id)


@ratelimits_router.put("/{user_id}", response_model=UserRateLimitView)
async def put_user_limits(
    user_id: UserId, body: Limits, caller: Owner, adm: Adm
) -> UserRateLimitView:
    return await _set_limits(adm, caller, user_id, body)


@ratelimits_router.delete("/{user_id}", status_code=204)
async def delete_user_limits(user_id: UserId, caller: Owner, adm: Adm) -> Response:
    """Back to the tenant's default for its users."""
    return await _clear_limits(adm, caller, user_id)


async def _set_limits(
    adm: Admission, caller: Caller, user_id: str, body: RateLimitIn
) -> UserRateLimitView:
    limits = UserLimits(caller.tenant_id, user_id, body.rpm, body.tpm)
    await set_user_limits(adm.db, limits)
    await _copy_to_redis(adm, limits)
    return await _limits_view(adm, caller, user_id)


async def _clear_limits(adm: Admission, caller: Caller, user_id: str) -> Response:
    await clear_user_limits(adm.db, caller.tenant_id, user_id)
    await _copy_to_redis(adm, UserLimits(caller.tenant_id, user_id, None, None))
    return Response(status_code=204)


async def _limits_view(adm: Admission, caller: Caller, user_id: str) -> UserRateLimitView:
    own = await user_limits(adm.db, caller.tenant_id, user_id)
    default = own
    if user_id != DEFAULT_USER:
        default = await user_limits(adm.db, caller.tenant_id, DEFAULT_USER)
    return UserRateLimitView(
        user_id=user_id or None,
        rpm=own.requests_per_min or default.requests_per_min,
        tpm=own.tokens_per_min or default.tokens_per_min,
        own=RateLimitIn(rpm=own.requests_per_min, tpm=own.tokens_per_min),
    )


async def copy_to_redis(windows: RateWindows, limits: UserLimits) -> None:
    """Redis's copy of one user's (or the default's) limits, read on every request."""
    user = (
        None if limits.user_id == DEFAULT_USER else user_subject(limits.tenant_id, limits.user_id)
    )
    await windows.set_user_limits(
        limits.tenant_id, user, limits.requests_per_min, limits.tokens_per_min
    )


async def _copy_to_redis(adm: Admission, limits: UserLimits) -> None:
    # Postgres has the change; a retry of the same call copies it.
    await _redis(copy_to_redis(adm.windows, limits))


async def _redis(call: Awaitable[T]) -> T:
    try:
        return await call
    except TransientError as exc:
        raise unavailable("limits", exc) from exc


def _user(caller: Caller, user_id: str) -> Scope:
    return Scope("user", user_subject(caller.tenant_id, user_id))


def _default(caller: Caller) -> Scope:
    return Scope("users", caller.tenant_id)
