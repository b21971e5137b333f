"""The usage projection: daily totals and monthly spend, written one batch at a time.

A batch is one statement in one transaction: claim every event id (the ones
already claimed are skipped), then add the rest with one upsert per table. A redelivered
batch or a whole replayed topic therefore adds nothing twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

import orjson
from sqlalchemy import text

from infra.db.engine import Database

NO_KEY = uuid.UUID(int=0)
NO_KEY_TEXT = str(NO_KEY)

# One round trip per batch: claim the ids, keep the rows whose claim is new,
# and add them up per day row and per month spend, all in one statement (the
# data-modifying CTEs share one snapshot and commit together). Rows are
# grouped and upserted in key order, so two workers lock them in one order.
_RECORD = text("""
WITH batch AS (
  -- DISTINCT: a batch may hold an event twice (a redelivery next to the original).
  SELECT DISTINCT ON (id) * FROM json_to_recordset(CAST(:rows AS json)) AS b(
    id uuid, tenant_id uuid, day date, api_key_id uuid, user_id text, model text,
    input_tokens bigint, output_tokens bigint, cost_usd numeric
  )
),
claimed AS (
  INSERT INTO usage_events_seen (event_id) SELECT id FROM batch
  ON CONFLICT DO NOTHING RETURNING event_id
),
grouped AS (
  SELECT b.tenant_id, b.day, b.api_key_id, b.user_id, b.model, count(*) AS events,
         sum(b.input_tokens) AS input_tokens, sum(b.output_tokens) AS output_tokens,
         sum(b.cost_usd) AS cost_usd
  FROM batch b JOIN claimed c ON c.event_id = b.id
  GROUP BY 1, 2, 3, 4, 5
),
daily AS (
  INSERT INTO usage_daily AS u
    (tenant_id, day, api_key_id, user_id, model, events, input_tokens, output_tokens, cost_usd)
  SELECT * FROM grouped ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, day, api_key_id, user_id, model) DO UPDATE SET
    events = u.events + excluded.events,
    input_tokens = u.input_tokens + excluded.input_tokens,
    output_tokens = u.output_tokens + excluded.output_tokens,
    cost_usd = u.cost_usd + excluded.cost_usd
  RETURNING 1
),
spend AS (
  SELECT 'tenant' AS scope, tenant_id AS scope_id, to_char(day, 'YYYY-MM') AS period,
         tenant_id, cost_usd FROM grouped
  UNION ALL
  SELECT 'key', api_key_id, to_char(day, 'YYYY-MM'), tenant_id, cost_usd FROM grouped
  WHERE api_key_id <> :no_key
),
spent AS (
  INSERT INTO budget_spend AS s (scope, scope_id, period, tenant_id, spent_usd)
  SELECT scope, scope_id, period, tenant_id, sum(cost_usd)
  FROM spend GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3
  ON CONFLICT (scope, scope_id, period) DO UPDATE SET spent_usd = s.spent_usd + excluded.spent_usd
  RETURNING 1
)
SELECT (SELECT count(*) FROM claimed), (SELECT count(*) FROM daily), (SELECT count(*) FROM spent)
""")
_SPEND = text(
    "SELECT s.scope, s.scope_id, s.period, s.tenant_id, s.spent_usd, s.alerted_pct, b.monthly_usd "
    "FROM budget_spend s LEFT JOIN budgets b ON b.scope = s.scope AND b.scope_id = s.scope_id "
    "WHERE (s.scope, s.scope_id, s.period) IN (SELECT * FROM unnest(CAST(:scope AS text[]), "
    "CAST(:scope_id AS uuid[]), CAST(:period AS text[])))"
)


class UsageRow(TypedDict):
    """One usage event as the bill needs it, with the strings its JSON carried.

    A batch goes to Postgres as one JSON document: Postgres parses the ids,
    days and amounts while it reads it, which is far cheaper than building
    Python objects for each and checks them as strictly (a bad value fails
    the batch, which the runner retries event by event to dead-letter it).
    """

    id: str
    tenant_id: str
    day: str
    job_id: str
    api_key_id: str
    user_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: str


def spend_keys(rows: list[UsageRow]) -> list[SpendKey]:
    """The (scope, id, month) of every tenant and key a batch spends on."""
    keys: set[tuple[str, str, str]] = set()
    for r in rows:
        keys.add(("tenant", r["tenant_id"], r["day"][:7]))
        if r["api_key_id"] != NO_KEY_TEXT:
            keys.add(("key", r["api_key_id"], r["day"][:7]))
    return [(scope, uuid.UUID(id_), period) for scope, id_, period in sorted(keys)]


@dataclass(frozen=True)
class Spend:
    """A tenant's or key's spend in one month, its budget (if any) and alerts sent."""

    scope: str
    scope_id: uuid.UUID
    period: str
    tenant_id: uuid.UUID
    spent_usd: Decimal
    alerted_pct: int
    monthly_usd: Decimal | None


SpendKey = tuple[str, uuid.UUID, str]


async def record_batch(db: Database, rows: list[UsageRow]) -> int:
    """Add the events not counted yet; returns how many were new."""
    if not rows:
        return 0
    params = {"no_key": NO_KEY, "rows": orjson.dumps(rows).decode()}
    async with db.transaction() as session:
        claimed, _, _ = (await session.execute(_RECORD, params)).one()
    return int(claimed)


async def spend_of(db: Database, keys: list[SpendKey]) -> list[Spend]:
    """The current spend rows for these (scope, id, period) keys."""
    if not keys:
        return []
    async with db.session() as session:
        rows = await session.execute(
            _SPEND,
            {
                "scope": [k[0] for k in keys],
                "scope_id": [k[1] for k in keys],
                "period": [k[2] for k in keys],
            },
        )
        return [Spend(*row) for row in rows]


async def mark_alerted(db: Database, key: SpendKey, pct: int) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE budget_spend SET alerted_pct = GREATEST(alerted_pct, :pct) "
                "WHERE scope = :scope AND scope_id = :scope_id AND period = :period"
            ),
            {"pct": pct, "scope": key[0], "scope_id": key[1], "period": key[2]},
        )
