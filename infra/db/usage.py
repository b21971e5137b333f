"""The usage projection: daily totals and monthly spend, written one batch at a time.

A batch is one transaction: claim every event id (the ones already claimed
are skipped), then add the rest, summed per daily row, with one upsert per
table. A redelivered batch or a whole replayed topic therefore adds nothing
twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypedDict

import asyncpg
from sqlalchemy import text

from infra.db.engine import Database
from infra.errors import TransientError
from schemas.ids import user_subject

NO_KEY = uuid.UUID(int=0)
NO_KEY_TEXT = str(NO_KEY)
# What a retry can cure: a lost connection, a restart, a deadlock with another worker.
_TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

# Claims: COPY the ids straight into the claims table. A batch is almost
# always new, and COPY into a plain unique index is the cheapest way to claim
# it; the one id counted before (a redelivery, a replay) fails the COPY and the
# batch is claimed again one id at a time with ON CONFLICT (see record_batch).
_CLAIM_EACH = (
    "INSERT INTO usage_events_seen (event_id) SELECT unnest($1::uuid[]) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)
# The totals of the claimed events, summed per group in Python, added with one
# upsert per table. Grouping again here folds two spellings of one tenant or key
# id into one row (Python grouped the strings); rows are upserted in key order,
# so two workers lock them in one order.
_ADD = """
WITH grouped AS (
  SELECT CAST(tenant_id AS uuid) AS tenant_id, CAST(day AS date) AS day,
         CAST(api_key_id AS uuid) AS api_key_id, user_id, model, sum(events) AS events,
         sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
         sum(CAST(cost_usd AS numeric)) AS cost_usd,
         CAST(NULLIF(min(user_subject), '') AS uuid) AS user_subject
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
              $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $11::text[])
    AS g(tenant_id, day, api_key_id, user_id, model, events, input_tokens, output_tokens, cost_usd,
         user_subject)
  GROUP BY 1, 2, 3, 4, 5
),
daily AS (
  INSERT INTO usage_daily AS u
    (tenant_id, day, api_key_id, user_id, model, events, input_tokens, output_tokens, cost_usd)
  SELECT tenant_id, day, api_key_id, user_id, model, events, input_tokens, output_tokens, cost_usd
  FROM grouped ORDER BY 1, 2, 3, 4, 5
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
  WHERE api_key_id <> $10::uuid
  UNION ALL
  SELECT 'user', user_subject, to_char(day, 'YYYY-MM'), tenant_id, cost_usd FROM grouped
  WHERE user_subject IS NOT NULL
),
spent AS (
  INSERT INTO budget_spend AS s (scope, scope_id, period, tenant_id, spent_usd)
  SELECT scope, scope_id, period, tenant_id, sum(cost_usd)
  FROM spend GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3
  ON CONFLICT (scope, scope_id, period) DO UPDATE SET spent_usd = s.spent_usd + excluded.spent_usd
  RETURNING 1
)
SELECT (SELECT count(*) FROM daily), (SELECT count(*) FROM spent)
"""
_SPEND = text(
    "SELECT s.scope, s.scope_id, s.period, s.tenant_id, s.spent_usd, s.alerted_pct, b.monthly_usd "
    "FROM budget_spend s LEFT JOIN budgets b ON b.scope = s.scope AND b.scope_id = s.scope_id "
    "WHERE (s.scope, s.scope_id, s.period) IN (SELECT * FROM unnest(CAST(:scope AS text[]), "
    "CAST(:scope_id AS uuid[]), CAST(:period AS text[])))"
)


class UsageRow(TypedDict):
    """One usage event as the bill needs it, with the strings its JSON carried.

    Only the amounts become Python objects (to be summed). Ids, days and
    keys stay strings that Postgres parses as it copies or casts them, which
    is far cheaper than building UUIDs and dates for each and checks them as
    strictly (a bad value fails the batch, which the runner retries event by
    event to dead-letter it).
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
    """The (scope, id, month) of every tenant, key and user a batch spends on."""
    keys: set[tuple[str, str, str]] = set()
    for r in rows:
        keys.add(("tenant", r["tenant_id"], r["day"][:7]))
        if r["api_key_id"] != NO_KEY_TEXT:
            keys.add(("key", r["api_key_id"], r["day"][:7]))
        if r["user_id"]:
            keys.add(("user", _user_subject(r["tenant_id"], r["user_id"]), r["day"][:7]))
    return [(scope, uuid.UUID(id_), period) for scope, id_, period in sorted(keys)]


@lru_cache(maxsize=65536)
def _user_subject(tenant_id: str, user_id: str) -> str:
    """The user's budget id (schemas.ids.user_subject) from the event's strings."""
    return str(user_subject(uuid.UUID(tenant_id), user_id))


@dataclass(frozen=True)
class Spend:
    """A tenant's, key's or user's spend in one month, its budget (if any) and alerts sent."""

    scope: str
    scope_id: uuid.UUID
    period: str
    tenant_id: uuid.UUID
    spent_usd: Decimal
    alerted_pct: int
    monthly_usd: Decimal | None


SpendKey = tuple[str, uuid.UUID, str]
GroupKey = tuple[str, str, str, str, str]  # tenant, day, key, user, model


async def record_batch(db: Database, rows: list[UsageRow]) -> int:
    """Add the events not counted yet; returns how many were new."""
    rows = list({r["id"]: r for r in reversed(rows)}.values())  # the first of each id
    if not rows:
        return 0
    totals = group_totals(rows)  # before a connection is taken: a bad amount fails here
    try:
        async with (await db.pool()).acquire() as conn:
            try:
                async with conn.transaction():
                    ids = [(r["id"],) for r in rows]
                    await conn.copy_records_to_table(
                        "usage_events_seen", records=ids, columns=["event_id"]
                    )
                    await _add(conn, totals)
                return len(rows)
            except asyncpg.UniqueViolationError:
                pass  # some were counted before: claim one by one, count the rest
            async with conn.transaction():
                new = await _claim_each(conn, rows)
                await _add(conn, group_totals(new))
            return len(new)
    except _TRANSIENT as exc:
        raise TransientError(f"usage write failed: {exc}") from exc


async def _claim_each(conn: asyncpg.Connection, rows: list[UsageRow]) -> list[UsageRow]:
    """The rows whose ids this transaction claimed, each id once however it was spelled."""
    claimed = {str(r[0]) for r in await conn.fetch(_CLAIM_EACH, [r["id"] for r in rows])}
    new = []
    for r in rows:
        if (canonical := str(uuid.UUID(r["id"]))) in claimed:
            claimed.remove(canonical)
            new.append(r)
    return new


async def _add(conn: asyncpg.Connection, totals: dict[GroupKey, list[Any]]) -> None:
    if totals:
        users = [_user_subject(k[0], k[3]) if k[3] else "" for k in totals]
        await conn.execute(_ADD, *_columns(totals), NO_KEY, users)


def group_totals(rows: list[UsageRow]) -> dict[GroupKey, list[Any]]:
    """events, input tokens, output tokens and cost (Decimal) per daily row."""
    totals: dict[GroupKey, list[Any]] = {}
    for r in rows:
        key = (r["tenant_id"], r["day"], r["api_key_id"], r["user_id"], r["model"])
        cost = Decimal(r["cost_usd"])
        if not cost.is_finite():
            raise ValueError(f"cost must be a finite amount: {r['cost_usd']}")
        total = totals.get(key)
        if total is None:
            totals[key] = [1, r["input_tokens"], r["output_tokens"], cost]
        else:
            total[0] += 1
            total[1] += r["input_tokens"]
            total[2] += r["output_tokens"]
            total[3] += cost
    return totals


def _columns(totals: dict[GroupKey, list[Any]]) -> list[list[Any]]:
    keys = list(totals)
    values = list(totals.values())
    return [[k[i] for k in keys] for i in range(5)] + [
        [v[0] for v in values],
        [v[1] for v in values],
        [v[2] for v in values],
        [str(v[3]) for v in values],
    ]


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
