"""Outbound webhook subscriptions and their messages (migration 0985_i_hooks).

A message row is written once per (subscription, event) by the notifications group, then
attempted by its due-attempts loop: `claim_due` leases the pending rows whose time has come
(SKIP LOCKED, so several workers share them), `settle` records an attempt and schedules the
next one or ends the message. A crash loses nothing: a leased row whose worker died is due
again when its lease ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Column, LargeBinary, delete, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from infra.db.engine import Database
from infra.db.models import timestamp, timestamp_now, utcnow


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    # {"current": ..., "previous": ...} sealed: the previous secret signs until
    # `previous_valid_until` (a rotation's overlap).
    secret_key_id: str = Field(max_length=64)
    secret_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    previous_valid_until: datetime | None = timestamp()
    failing_since: datetime | None = timestamp()
    created_at: datetime = timestamp_now()


def subscription_context(row: WebhookSubscription) -> bytes:
    """Associated data of a subscription's sealed secrets: they open on this row only."""
    return b"webhook-subscription:" + row.id.bytes + row.tenant_id.bytes


def pack_secrets(current: str, previous: str | None = None) -> bytes:
    return orjson.dumps({"current": current, "previous": previous})


def signing_secrets(opened: bytes, previous_valid_until: datetime | None) -> list[str]:
    """The secrets that sign now: the current one, and the previous during its overlap."""
    found = orjson.loads(opened)
    signing = [found["current"]]
    if found.get("previous") and previous_valid_until and previous_valid_until > utcnow():
        signing.append(found["previous"])
    return signing


async def get_subscription(
    db: Database, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> WebhookSubscription | None:
    return await db.get(WebhookSubscription, subscription_id, tenant_id)


async def list_subscriptions(db: Database, tenant_id: uuid.UUID) -> list[WebhookSubscription]:
    async with db.tenant_reads(tenant_id) as session:
        found = await session.execute(
            select(WebhookSubscription)
            .where(WebhookSubscription.tenant_id == tenant_id)
            .order_by(WebhookSubscription.created_at)
        )
        return list(found.scalars())


async def enabled_subscriptions(db: Database, tenant_id: uuid.UUID) -> list[WebhookSubscription]:
    """The worker's read: the tenant's subscriptions that receive messages now."""
    async with db.session() as session:
        found = await session.execute(
            select(WebhookSubscription).where(
                WebhookSubscription.tenant_id == tenant_id,
                WebhookSubscription.enabled.is_(True),
            )
        )
        return list(found.scalars())


async def update_subscription(
    db: Database, tenant_id: uuid.UUID, subscription_id: uuid.UUID, values: dict[str, Any]
) -> WebhookSubscription | None:
    async with db.transaction() as session:
        found = await session.execute(
            update(WebhookSubscription)
            .where(
                WebhookSubscription.id == subscription_id,
                WebhookSubscription.tenant_id == tenant_id,
            )
            .values(**values)
            .returning(WebhookSubscription)
        )
        return found.scalars().first()


async def delete_subscription(
    db: Database, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> bool:
    async with db.transaction() as session:
        done = await session.execute(
            delete(WebhookSubscription).where(
                WebhookSubscription.id == subscription_id,
                WebhookSubscription.tenant_id == tenant_id,
            )
        )
        return bool(done.rowcount)


@dataclass(frozen=True)
class NewMessage:
    id: uuid.UUID
    subscription_id: uuid.UUID
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: str


async def enqueue(db: Database, messages: Sequence[NewMessage]) -> int:
    """Write the messages, due now; one already there (a redelivered event) is kept as is."""
    if not messages:
        return 0
    async with db.transaction() as session:
        done = await session.execute(
            text(
                "INSERT INTO webhook_messages (id, subscription_id, tenant_id, event_id, "
                "event_type, body, next_attempt_at) VALUES (:id, :subscription_id, :tenant_id, "
                ":event_id, :event_type, :body, now()) ON CONFLICT DO NOTHING"
            ),
            [vars(m) for m in messages],
        )
        return int(done.rowcount or 0)


@dataclass(frozen=True)
class Due:
    """A message whose attempt is due, with what sending it needs."""

    id: uuid.UUID
    subscription_id: uuid.UUID
    tenant_id: uuid.UUID
    event_type: str
    body: str
    step: int
    attempts: int
    url: str
    subscription: WebhookSubscription


# Per subscription that has due messages, its oldest ones, at most its cap less what is in
# flight for it here (`busy`: a JSON object of subscription id -> attempts running), so a
# subscription with a backlog never hides another's messages; then the oldest `limit`.
_CLAIM = """
WITH due_subs AS (
    SELECT DISTINCT m.subscription_id FROM webhook_messages m
    WHERE m.status = 'pending' AND m.next_attempt_at <= now()
      AND (m.lease_until IS NULL OR m.lease_until < now())
), chosen AS (
    SELECT picked.id FROM due_subs d
    JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
    CROSS JOIN LATERAL (
        SELECT m.id, m.next_attempt_at FROM webhook_messages m
        WHERE m.subscription_id = d.subscription_id AND m.status = 'pending'
          AND m.next_attempt_at <= now() AND (m.lease_until IS NULL OR m.lease_until < now())
        ORDER BY m.next_attempt_at
        LIMIT greatest(
            :cap - coalesce((CAST(:busy AS jsonb) ->> d.subscription_id::text)::int, 0), 0
        )
        FOR UPDATE OF m SKIP LOCKED
    ) picked
    ORDER BY picked.next_attempt_at
    LIMIT :limit
)
UPDATE webhook_messages m SET lease_until = now() + make_interval(secs => :lease_s)
FROM chosen WHERE m.id = chosen.id
RETURNING m.id, m.subscription_id, m.tenant_id, m.event_type, m.body, m.step, m.attempts
"""


async def claim_due(
    db: Database, limit: int, lease_s: float, cap: int, busy: Mapping[uuid.UUID, int]
) -> list[Due]:
    """Lease up to `limit` due messages, no subscription past `cap` attempts at once
    counting the `busy` ones (in flight in this process)."""
    params = {
        "lease_s": lease_s,
        "limit": limit,
        "cap": cap,
        "busy": orjson.dumps({str(k): v for k, v in busy.items()}).decode(),
    }
    async with db.transaction() as session:
        rows = (await session.execute(text(_CLAIM), params)).all()
        if not rows:
            return []
        ids = {row.subscription_id for row in rows}
        subs = {
            s.id: s
            for s in (
                await session.execute(
                    select(WebhookSubscription).where(WebhookSubscription.id.in_(ids))
                )
            ).scalars()
        }
    return [
        Due(
            row.id,
            row.subscription_id,
            row.tenant_id,
            row.event_type,
            row.body,
            row.step,
            row.attempts,
            subs[row.subscription_id].url,
            subs[row.subscription_id],
        )
        for row in rows
    ]


_NEXT = """
UPDATE webhook_messages m SET lease_until = now() + make_interval(secs => :lease_s)
WHERE m.id = (
    SELECT n.id FROM webhook_messages n
    WHERE n.subscription_id = :sub AND n.status = 'pending' AND n.next_attempt_at <= now()
      AND (n.lease_until IS NULL OR n.lease_until < now())
      AND EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.id = :sub AND s.enabled)
    ORDER BY n.next_attempt_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING m.id, m.subscription_id, m.tenant_id, m.event_type, m.body, m.step, m.attempts
"""


async def claim_next(db: Database, subscription_id: uuid.UUID, lease_s: float) -> Due | None:
    """The subscription's oldest due message, leased: what a slot that just finished one
    takes next (one indexed statement, no scan of the others)."""
    async with db.transaction() as session:
        row = (
            await session.execute(text(_NEXT), {"lease_s": lease_s, "sub": subscription_id})
        ).first()
        if row is None:
            return None
        sub = await session.get(WebhookSubscription, subscription_id)
    if sub is None:
        return None
    return Due(
        row.id, row.subscription_id, row.tenant_id, row.event_type, row.body, row.step,
        row.attempts, sub.url, sub,
    )  # fmt: skip


async def next_due_at(db: Database) -> datetime | None:
    async with db.session() as session:
        found = await session.execute(
            text(
                "SELECT min(greatest(next_attempt_at, coalesce(lease_until, next_attempt_at))) "
                "FROM webhook_messages WHERE status = 'pending'"
            )
        )
        value: datetime | None = found.scalar()
        return value


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def settle(
    db: Database, due: Due, attempt: Attempt, retry_in: timedelta | None
) -> datetime | None:
    """Record an attempt: delivered, retried after `retry_in`, or failed for good (None).

    Returns the subscription's `failing_since` after it (None once one delivery succeeds).
    """
    now = utcnow()
    if attempt.ok:
        status, next_at = "delivered", None
    elif retry_in is not None:
        status, next_at = "pending", now + retry_in
    else:
        status, next_at = "failed", None
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE webhook_messages SET status = :status, step = step + 1, "
                "attempts = attempts + 1, next_attempt_at = :next_at, lease_until = NULL, "
                "last_status_code = :code, last_latency_ms = :latency, last_response = :response, "
                "last_error = :error, delivered_at = CASE WHEN :ok THEN now() END "
                "WHERE id = :id"
            ),
            {
                "status": status,
                "next_at": next_at,
                "code": attempt.status_code,
                "latency": attempt.latency_ms,
                "response": attempt.response,
                "error": attempt.error,
                "ok": attempt.ok,
                "id": due.id,
            },
        )
        failing = await session.execute(
            text(
                "UPDATE webhook_subscriptions SET failing_since = CASE WHEN :ok THEN NULL "
                "ELSE coalesce(failing_since, :now) END WHERE id = :id RETURNING failing_since"
            ),
            {"ok": attempt.ok, "now": now, "id": due.subscription_id},
        )
        since: datetime | None = failing.scalar()
        return since


async def disable(db: Database, subscription_id: uuid.UUID, reason: str) -> bool:
    """Disable a subscription that is still enabled and failing; True if this call did."""
    async with db.transaction() as session:
        done = await session.execute(
            text(
                "UPDATE webhook_subscriptions SET enabled = false, disabled_reason = :reason "
                "WHERE id = :id AND enabled AND failing_since IS NOT NULL"
            ),
            {"reason": reason, "id": subscription_id},
        )
        return bool(done.rowcount)


_VIEW = (
    "SELECT id, event_type, status, attempts, next_attempt_at, last_status_code, "
    "last_latency_ms, last_response, last_error, created_at, delivered_at FROM webhook_messages"
)


async def list_messages(
    db: Database, tenant_id: uuid.UUID, subscription_id: uuid.UUID, limit: int = 100
) -> list[dict[str, Any]]:
    async with db.tenant_reads(tenant_id) as session:
        found = await session.execute(
            text(
                f"{_VIEW} WHERE tenant_id = :tenant AND subscription_id = :sub "
                "ORDER BY created_at DESC, id DESC LIMIT :limit"
            ),
            {"tenant": tenant_id, "sub": subscription_id, "limit": limit},
        )
        return [dict(row._mapping) for row in found]


async def redeliver(
    db: Database,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    *,
    message_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> int:
    """Attempt messages again from the start of the schedule, under the same webhook-id:
    one message (whatever its status), or every one created since a time that was not
    delivered (failed for good, or pending a later retry)."""
    where = "tenant_id = :tenant AND subscription_id = :sub"
    params: dict[str, Any] = {"tenant": tenant_id, "sub": subscription_id}
    if message_id is not None:
        where += " AND id = :id"
        params["id"] = message_id
    if since is not None:
        where += " AND created_at >= :since AND status <> 'delivered'"
        params["since"] = since
    async with db.transaction() as session:
        done = await session.execute(
            text(
                "UPDATE webhook_messages SET status = 'pending', step = 0, "
                f"next_attempt_at = now(), lease_until = NULL WHERE {where}"
            ),
            params,
        )
        return int(done.rowcount or 0)


async def release(db: Database, message_id: uuid.UUID) -> None:
    """Give a claimed message's lease back without attempting it."""
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE webhook_messages SET lease_until = NULL WHERE id = :id"),
            {"id": message_id},
        )


async def prune(db: Database, before: datetime, chunk: int = 5000) -> int:
    """Deletes settled messages made before `before`, `chunk` rows a statement (short
    locks); returns how many went. Pending ones stay whatever their age."""
    pruned = 0
    while True:
        async with db.transaction() as session:
            gone = await session.execute(
                text(
                    "DELETE FROM webhook_messages WHERE id IN (SELECT id FROM webhook_messages "
                    "WHERE status <> 'pending' AND created_at < :before LIMIT :chunk)"
                ),
                {"before": before, "chunk": chunk},
            )
        count = int(gone.rowcount or 0)
        pruned += count
        if count < chunk:
            return pruned
