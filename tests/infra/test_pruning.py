"""Rows that only grow are pruned: settled webhook messages past the delivery log's keep,
and the claims of slots fired long ago. What is pending or recent stays."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from infra.db import outbound_webhooks as hooks
from infra.db import schedules
from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.outbound_webhooks import NewMessage, WebhookSubscription
from infra.db.schedule_models import ScheduleSlot
from schemas.ids import uuid7
from tests.conftest import make_tenant


async def test_settled_messages_past_the_keep_are_pruned_and_pending_ones_stay(
    db: Database,
) -> None:
    tenant = await make_tenant(db, admin=True)
    tenant_id = uuid.UUID(str(tenant.tenant_id))
    sub = WebhookSubscription(
        id=uuid7(), tenant_id=tenant_id, url="https://example.com/hook", event_types=["*"],
        secret_key_id="k", secret_sealed=b"x",
    )  # fmt: skip
    async with db.transaction() as session:
        session.add(sub)
    ids = {name: uuid7() for name in ("old_delivered", "old_failed", "old_pending", "new")}
    await hooks.enqueue(
        db,
        [NewMessage(i, sub.id, tenant_id, uuid7(), "job.succeeded", "{}") for i in ids.values()],
    )
    async with db.transaction() as session:
        for name, status in (("old_delivered", "delivered"), ("old_failed", "failed"),
                             ("old_pending", "pending"), ("new", "delivered")):  # fmt: skip
            made = utcnow() - timedelta(days=0 if name == "new" else 40)
            await session.execute(
                text(
                    "UPDATE webhook_messages SET status = :status, "
                    "created_at = :made WHERE id = :id"
                ),
                {"status": status, "made": made, "id": ids[name]},
            )
    assert await hooks.prune(db, utcnow() - timedelta(days=30), chunk=1) >= 2
    async with db.session() as session:
        left = set(
            (
                await session.execute(
                    text("SELECT id FROM webhook_messages WHERE subscription_id = :s"),
                    {"s": sub.id},
                )
            ).scalars()
        )
    assert left == {ids["old_pending"], ids["new"]}


async def test_claims_of_slots_fired_long_ago_are_pruned(db: Database) -> None:
    tenant = await make_tenant(db, admin=True)
    tenant_id = uuid.UUID(str(tenant.tenant_id))
    schedule_id = uuid7()
    now = utcnow()
    then = now - timedelta(days=40)
    old = ScheduleSlot(id=uuid7(), tenant_id=tenant_id, schedule_id=schedule_id,
                       slot_at=then, fired_at=then)  # fmt: skip
    recent = ScheduleSlot(id=uuid7(), tenant_id=tenant_id, schedule_id=schedule_id,
                          slot_at=now, fired_at=now)  # fmt: skip
    async with db.transaction() as session:
        session.add_all([old, recent])
    assert await schedules.prune_slots(db, now - timedelta(days=30)) >= 1
    assert [s.id for s in await schedules.fired_slots(db, schedule_id)] == [recent.id]
