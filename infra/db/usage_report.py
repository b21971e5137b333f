"""Reading usage totals back: by model, user, key or day, over a range of days."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import text

from infra.db.engine import Database

# The grouping column of each `group_by`; fixed strings, never user input.
GROUP_COLUMNS = {
    "model": "model",
    "user": "user_id",
    "key": "CAST(api_key_id AS text)",
    "day": "CAST(day AS text)",
}


@dataclass(frozen=True)
class UsageTotal:
    group: str
    events: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


async def usage_totals(
    db: Database,
    tenant_id: uuid.UUID,
    first: date,
    last: date,
    group_by: str,
    api_key_id: uuid.UUID | None = None,
    user_id: str | None = None,
) -> list[UsageTotal]:
    """Totals per group for the days first..last (both included), ordered by group;
    only one key's or one user's usage when given."""
    column = GROUP_COLUMNS[group_by]
    only_key = "AND api_key_id = :key " if api_key_id is not None else ""
    only_user = "AND user_id = :user " if user_id is not None else ""
    query = text(
        f"SELECT {column} AS g, SUM(events), SUM(input_tokens), SUM(output_tokens), "
        "SUM(cost_usd) FROM usage_daily "
        f"WHERE tenant_id = :tenant AND day BETWEEN :first AND :last {only_key}{only_user}"
        "GROUP BY g ORDER BY g"
    )
    params: dict[str, object] = {"tenant": tenant_id, "first": first, "last": last}
    if api_key_id is not None:
        params["key"] = api_key_id
    if user_id is not None:
        params["user"] = user_id
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(query, params)
        return [UsageTotal(r[0], int(r[1]), int(r[2]), int(r[3]), Decimal(r[4])) for r in rows]


def total_of(rows: list[UsageTotal]) -> UsageTotal:
    return UsageTotal(
        "total",
        sum(r.events for r in rows),
        sum(r.input_tokens for r in rows),
        sum(r.output_tokens for r in rows),
        sum((r.cost_usd for r in rows), Decimal(0)),
    )


async def tenant_id_by_name(db: Database, name: str) -> uuid.UUID | None:
    async with db.session() as session:
        row = await session.execute(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
        found = row.first()
        return found[0] if found else None
