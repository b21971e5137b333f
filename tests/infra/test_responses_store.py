"""Response rows: the previous_response_id chain, and undoing a turn never published."""

from __future__ import annotations

import uuid

from infra.db import conversation_items
from infra.db import responses as store
from infra.db.conversation_models import ResponseRecord
from infra.db.engine import Database
from schemas.conversations import MessageItem
from schemas.ids import uuid7
from schemas.responses_api import input_items
from tests.conftest import make_tenant


def row(tenant_id: uuid.UUID, previous: uuid.UUID | None) -> ResponseRecord:
    return ResponseRecord(
        id=uuid7(), tenant_id=tenant_id, previous_response_id=previous, model="m", status="queued"
    )


async def test_the_chain_is_oldest_first_and_bounded(db: Database) -> None:
    tenant = await make_tenant(db)
    tenant_id = uuid.UUID(str(tenant.tenant_id))
    ids: list[uuid.UUID] = []
    for _ in range(4):
        r = row(tenant_id, ids[-1] if ids else None)
        await store.create(db, r, [])
        ids.append(r.id)
    assert await store.chain(db, tenant_id, ids[-1]) == ids
    assert await store.chain(db, tenant_id, ids[-1], limit=2) == ids[-2:]
    assert await store.chain(db, tenant_id, ids[1]) == ids[:2]
    other = await make_tenant(db)
    assert await store.chain(db, uuid.UUID(str(other.tenant_id)), ids[-1]) == []


async def test_an_unpublished_turn_leaves_nothing(db: Database) -> None:
    tenant = await make_tenant(db)
    tenant_id = uuid.UUID(str(tenant.tenant_id))
    r = row(tenant_id, None)
    items = input_items(r.id, [MessageItem(role="user", content="hi")], 0)
    await store.create(db, r, items)
    assert await conversation_items.of_responses(db, tenant_id, [r.id]) == items
    await store.delete_unpublished(db, tenant_id, r.id)
    assert await store.get(db, tenant_id, r.id) is None
    assert await conversation_items.of_responses(db, tenant_id, [r.id]) == []
