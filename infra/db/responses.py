"""Response rows: written by the ingress (queued, with the turn's input items) before the
job is published, moved on by the worker (in progress, then finished with its output
items), read back by the Responses API, and chained by `previous_response_id`.

Every write is idempotent (by id, or a status set to what it already is), so a
redelivered job or a replayed event changes nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import TextClause, delete, select, text, update

from infra.db import conversation_items
from infra.db.conversation_models import Conversation, ConversationItem, ResponseRecord
from infra.db.conversations import Claim, claimed
from infra.db.engine import Database
from schemas.conversations import StoredItem

TERMINAL = ("completed", "failed", "incomplete", "cancelled")
# How far back a previous_response_id chain is followed: a longer one is cut there.
MAX_CHAIN = 1000

_CHAIN = text(
    """
    WITH RECURSIVE chain(id, previous_response_id, depth) AS (
        SELECT id, previous_response_id, 1 FROM responses
        WHERE id = :start AND tenant_id = :tenant
        UNION ALL
        SELECT r.id, r.previous_response_id, c.depth + 1
        FROM responses r JOIN chain c ON r.id = c.previous_response_id
        WHERE r.tenant_id = :tenant AND c.depth < :limit
    )
    SELECT id FROM chain ORDER BY depth DESC
    """
)


async def create(
    db: Database,
    row: ResponseRecord,
    items: Sequence[StoredItem],
    claim: Claim | None = None,
    *,
    durable: bool = True,
) -> None:
    """The response (queued) and its input items, in one statement. Items are kept with
    the response when it is stored, and in its conversation when it has one. `claim`: the
    event a projection applies (once). `durable=False`: the ingress, whose job row's
    durable commit follows before the job is published."""
    params = {
        "id": row.id,
        "tenant": row.tenant_id,
        "user_id": row.user_id,
        "conversation_id": row.conversation_id,
        "previous_response_id": row.previous_response_id,
        "model": row.model,
        "status": row.status,
        "store": row.store,
        "background": row.background,
        "params": _json(row.params),
        "at": row.created_at,
        "items": _items(items),
    }
    async with db.transaction(durable=durable) as session:
        if await claimed(session, claim):
            await session.execute(_CREATE, params)


async def get(db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID) -> ResponseRecord | None:
    return await db.get(ResponseRecord, response_id, tenant_id)


async def set_status(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, status: str
) -> None:
    """Move a response that has not ended to `status` (an ended one stays as it ended).
    Not flushed to disk before it returns: the response's end, durable, comes after."""
    pool = await db.pool(durable=False)
    await pool.execute(_SET_STATUS, response_id, tenant_id, status, list(TERMINAL))


_SET_STATUS = (
    "UPDATE responses SET status = $3 "
    "WHERE id = $1 AND tenant_id = $2 AND NOT (status = ANY($4::text[]))"
)


async def finish(
    db: Database,
    tenant_id: uuid.UUID,
    response_id: uuid.UUID,
    *,
    status: str,
    output: Sequence[StoredItem] = (),
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    at: datetime | None = None,
    claim: Claim | None = None,
    durable: bool = True,
) -> bool:
    """End the response and keep its output items (with it when stored, in its
    conversation when it has one), in one statement. False when there is no such
    response (deleted meanwhile, or not in a replay). `at`: when it ended (now by
    default; a replay gives the event's time). `durable=False`: the worker, whose job
    completion's durable commit follows before anyone is told."""
    params = {
        "id": response_id,
        "tenant": tenant_id,
        "status": status,
        "usage": _json(usage),
        "error": _json(error),
        "context": _json(context),
        "at": at or datetime.now(UTC),
        "items": _items(output),
    }
    async with db.transaction(durable=durable) as session:
        if not await claimed(session, claim):
            return False
        ended = await session.execute(_FINISH, params)
        return bool(ended.scalar())


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _items(items: Sequence[StoredItem]) -> str:
    return orjson.dumps([i.model_dump(mode="json") for i in items]).decode()


def _with_items(turn: str, phase: int) -> TextClause:
    """A statement that writes a response (`turn`, returning its store flag and
    conversation) and keeps the turn's items (`:items`, at `:at`): with the response when
    stored, in its conversation when it has one, whose activity never goes back. One round
    trip; its count is 0 when `turn` wrote no row."""
    return text(
        f"""
        WITH turn AS ({turn}),
        kept AS (
            INSERT INTO conversation_items
                (id, tenant_id, conversation_id, response_id, phase, position, type, item,
                 created_at)
            SELECT x->>'id', :tenant, t.conversation_id, CASE WHEN t.store THEN :id END,
                {phase}, x->>'position', x->'item'->>'type', x,
                to_timestamp((x->>'created_at')::double precision)
            FROM turn t, jsonb_array_elements(CAST(:items AS jsonb)) AS x
            WHERE t.store OR t.conversation_id IS NOT NULL
            ON CONFLICT DO NOTHING
        ),
        active AS (
            UPDATE conversations c SET updated_at = :at
            FROM turn t
            WHERE c.id = t.conversation_id AND c.tenant_id = :tenant AND c.updated_at < :at
                AND jsonb_array_length(CAST(:items AS jsonb)) > 0
        )
        SELECT count(*) FROM turn
        """
    )


_CREATE = _with_items(
    """
    INSERT INTO responses (id, tenant_id, user_id, conversation_id, previous_response_id,
        model, status, store, background, params, created_at)
    VALUES (:id, :tenant, :user_id, :conversation_id, :previous_response_id, :model,
        :status, :store, :background, CAST(:params AS jsonb), :at)
    ON CONFLICT DO NOTHING
    RETURNING store, conversation_id
    """,
    0,
)
_FINISH = _with_items(
    """
    UPDATE responses SET status = :status, usage = CAST(:usage AS jsonb),
        error = CAST(:error AS jsonb), context = CAST(:context AS jsonb),
        completed_at = COALESCE(completed_at, :at)
    WHERE id = :id AND tenant_id = :tenant
    RETURNING store, conversation_id
    """,
    1,
)


async def items(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, phase: int
) -> list[StoredItem]:
    return await conversation_items.of_responses(db, tenant_id, [response_id], phase)


async def delete_response(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, claim: Claim | None = None
) -> bool:
    """Remove the response and the items only it holds; a conversation keeps its own.
    False when there was none."""
    async with db.transaction() as session:
        if not await claimed(session, claim):
            return False
        gone = await session.execute(
            delete(ResponseRecord)
            .where(ResponseRecord.id == response_id, ResponseRecord.tenant_id == tenant_id)
            .returning(ResponseRecord.id)
        )
        if gone.first() is None:
            return False
        owned = (
            ConversationItem.tenant_id == tenant_id,
            ConversationItem.response_id == response_id,
        )
        await session.execute(
            delete(ConversationItem).where(
                *owned,
                ConversationItem.conversation_id.is_(None),
            )
        )
        await session.execute(
            update(ConversationItem).where(*owned).values(response_id=None, phase=None)
        )
        return True


async def chain(
    db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID, limit: int = MAX_CHAIN
) -> list[uuid.UUID]:
    """The response and those before it by `previous_response_id`, oldest first (at
    most `limit`; one recursive query)."""
    async with db.tenant_reads(tenant_id) as session:
        rows = await session.execute(
            _CHAIN, {"start": response_id, "tenant": tenant_id, "limit": limit}
        )
        return [r[0] for r in rows]


async def delete_unpublished(db: Database, tenant_id: uuid.UUID, response_id: uuid.UUID) -> None:
    """Undo `create` for a job that was never published: the row and every item it wrote."""
    async with db.transaction() as session:
        await session.execute(
            delete(ResponseRecord).where(
                ResponseRecord.id == response_id, ResponseRecord.tenant_id == tenant_id
            )
        )
        await session.execute(
            delete(ConversationItem).where(
                ConversationItem.tenant_id == tenant_id,
                ConversationItem.id.in_(_input_ids(response_id)),
            )
        )


def _input_ids(response_id: uuid.UUID) -> Any:
    # The input items' ids all derive from the response id (position prefix).
    return select(ConversationItem.id).where(
        ConversationItem.position.startswith(response_id.hex + ".0")
    )


async def conversation(
    db: Database, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation | None:
    """The conversation a turn names, if it is the tenant's."""
    return await db.get(Conversation, conversation_id, tenant_id)
