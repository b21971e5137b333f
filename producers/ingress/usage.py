"""GET /v1/usage: totals by model, user, key or day, as JSON or CSV; one caller's own at
GET /v1/me/usage (producers.ingress.me)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from infra.csv_export import csv_text
from infra.db.engine import Database
from infra.db.usage_report import UsageTotal, total_of, usage_totals
from producers.ingress.admission import Admission, admission_dependency, rate_limited
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from schemas.money import usd_text
from schemas.usage import GroupBy, UsageReport, UsageRow

router = APIRouter(prefix="/v1/usage", tags=["usage"])

MAX_DAYS = 366
Format = Literal["json", "csv"]


@router.get("", response_model=UsageReport, response_model_by_alias=True)
async def get_usage(
    caller: Annotated[Caller, Depends(rate_limited)],
    adm: Annotated[Admission, Depends(admission_dependency)],
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    group_by: GroupBy = "model",
    format: Format = "json",
) -> Response | UsageReport:
    # Admin and auditor keys see the whole tenant; any other key only its own usage.
    if caller.key_id is None and not caller.sees_tenant:
        raise ApiError(403, "forbidden", "a signed-in user sees their own usage at /v1/me/usage")
    only_key = None if caller.sees_tenant else caller.key_id
    return await usage_report(
        adm.db, caller.tenant_id, first, last, group_by, format, api_key_id=only_key
    )


async def usage_report(
    db: Database,
    tenant_id: uuid.UUID,
    first: date | None,
    last: date | None,
    group_by: GroupBy,
    format: Format,
    *,
    api_key_id: uuid.UUID | None = None,
    user_id: str | None = None,
) -> Response | UsageReport:
    """The totals over `from`..`to` (default: this month so far), as JSON or CSV."""
    today = datetime.now(UTC).date()
    last = last or today
    first = first or last.replace(day=1)
    if last < first:
        raise ApiError(422, "invalid_request", "invalid field to: before from", field="to")
    if (last - first).days > MAX_DAYS:
        raise ApiError(
            422, "invalid_request", f"invalid field to: over {MAX_DAYS} days", field="to"
        )
    rows = await usage_totals(db, tenant_id, first, last, group_by, api_key_id, user_id)
    total = total_of(rows)
    if format == "csv":
        return Response(_csv(group_by, [*rows, total]), media_type="text/csv; charset=utf-8")
    return UsageReport(
        from_=first, to=last, group_by=group_by, rows=[_row(r) for r in rows], total=_row(total)
    )


def _row(total: UsageTotal) -> UsageRow:
    return UsageRow.model_validate(total, from_attributes=True)


def _csv(group_by: str, rows: list[UsageTotal]) -> str:
    header = [group_by, "events", "input_tokens", "output_tokens", "cost_usd"]
    return csv_text(
        header,
        ([r.group, r.events, r.input_tokens, r.output_tokens, usd_text(r.cost_usd)] for r in rows),
    )
