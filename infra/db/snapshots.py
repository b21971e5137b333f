"""The usage, memory and conversations projections as comparable rows, for `ayush verify`.

Like the jobs snapshot (infra.db.projection), each row is keyed by its table
and primary key and leaves out what events do not carry: row timestamps of
the live path. Vectors are compared by a digest of their stored text form.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from infra.db.engine import Database
from schemas.money import usd_text

Rows = dict[str, dict[str, Any]]

# (table, primary key columns, the columns compared)
_TABLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "usage_daily",
        ("tenant_id", "day", "api_key_id", "user_id", "model"),
        "tenant_id, day, api_key_id, user_id, model, events, input_tokens, output_tokens, cost_usd",
    ),
    (
        "budget_spend",
        ("scope", "scope_id", "period"),
        "scope, scope_id, period, tenant_id, spent_usd, alerted_pct",
    ),
    (
        "memories",
        ("id",),
        "id, tenant_id, user_id, text, metadata, status, error, chunks, embedding_model, "
        "embedding_dim",
    ),
    (
        "memory_chunks",
        ("id",),
        "id, memory_id, tenant_id, user_id, chunk, text, metadata, model, dim, "
        "md5(embedding::text) AS embedding_md5",
    ),
    ("memory_user_forgets", ("tenant_id", "user_id"), "tenant_id, user_id, before"),
    # updated_at (activity) is the live write's clock; responses' times are too.
    ("conversations", ("id",), "id, tenant_id, user_id, title, metadata, created_at"),
    (
        "conversation_items",
        ("id",),
        "id, tenant_id, conversation_id, response_id, phase, position, type, item, created_at",
    ),
    (
        "responses",
        ("id",),
        "id, tenant_id, user_id, conversation_id, previous_response_id, model, status, store, "
        "background, params, usage, error, context",
    ),
)
USAGE_TABLES = ("usage_daily", "budget_spend")
MEMORY_TABLES = ("memories", "memory_chunks", "memory_user_forgets")
CONVERSATION_TABLES = ("conversations", "conversation_items", "responses")


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return usd_text(value)  # every decimal column holds money
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def snapshot(db: Database, tenant_ids: Sequence[uuid.UUID], tables: Sequence[str]) -> Rows:
    """The rows of these tables that belong to these tenants, keyed by table:primary key."""
    rows: Rows = {}
    async with db.session() as session:
        for table, key, columns in _TABLES:
            if table not in tables:
                continue
            found = await session.execute(
                text(f"SELECT {columns} FROM {table} WHERE tenant_id = ANY(:tenants)"),
                {"tenants": list(tenant_ids)},
            )
            for row in found.mappings():
                values = {column: plain(value) for column, value in row.items()}
                rows[f"{table}:{'/'.join(str(values[k]) for k in key)}"] = values
    return rows
