"""GET /v1/me (who is calling) and GET /v1/me/usage (the caller's own usage).

For an API key, its own usage; for a signed-in person, their own user's usage,
whatever key or app made it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from producers.ingress.admission import Admission, RateLimitedCaller, admission_dependency
from producers.ingress.usage import Format, usage_report
from producers.ingress.user_limits import user_budget_view
from schemas.api import CallerView
from schemas.usage import GroupBy, MyUsageReport

router = APIRouter(prefix="/v1/me", tags=["me"])


@router.get("", response_model=CallerView)
async def who_am_i(caller: RateLimitedCaller) -> CallerView:
    return CallerView.model_validate(caller, from_attributes=True)


@router.get("/usage", response_model=MyUsageReport, response_model_by_alias=True)
async def my_usage(
    caller: RateLimitedCaller,
    adm: Annotated[Admission, Depends(admission_dependency)],
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    group_by: GroupBy = "model",
    format: Format = "json",
) -> Response | MyUsageReport:
    # A key's own usage, or (signed in with a token) the person's, with their budget.
    user = caller.user_id if caller.key_id is None else None
    report = await usage_report(
        adm.db,
        caller.tenant_id,
        first,
        last,
        group_by,
        format,
        api_key_id=caller.key_id,
        user_id=user,
    )
    if isinstance(report, Response):
        return report
    budget = await user_budget_view(adm, caller, user) if user is not None else None
    return MyUsageReport(**report.model_dump(), budget=budget)
