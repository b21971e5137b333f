"""Re-embedding: a change of embedding model is a job, not a silent mix of vector spaces.

Searches only ever compare vectors of the current model, so memories stored
by an older one are invisible to search until re-embedded. This publishes a
`memory.remember` event (source `reembed`) for each of them; the memory group
replaces their chunks with the current model's, through the log like any write.
"""

from __future__ import annotations

import uuid
from typing import Any

from infra.db import memories as memory_rows
from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from schemas import memory as memory_events
from schemas import topics
from schemas.envelope import Actor, Envelope

ACTOR = Actor(kind="system", id="memory-reembed")


async def reembed(
    db: Database, publisher: Publisher, model: str, tenant_id: uuid.UUID | None = None
) -> int:
    """Publish a re-embed event for every memory stored by another model (of one tenant when
    `tenant_id` is given); returns how many."""
    published = 0
    after: uuid.UUID | None = None
    while True:
        page = await memory_rows.stored_with_other_model(db, model, after, tenant_id=tenant_id)
        if not page:
            return published
        events = [
            (
                topics.MEMORY_COMMANDS.name,
                Envelope[Any](
                    type=memory_events.MEMORY_REMEMBER, tenant_id=tenant_id, actor=ACTOR,
                    correlation_id=memory_events.user_key(tenant_id, row.user_id),
                    payload=memory_events.Remember(
                        memory_id=row.id, user_id=row.user_id, text=row.text,
                        metadata=row.metadata, source="reembed",
                    ),
                ),
            )
            for tenant_id, row in page
        ]  # fmt: skip
        await publisher.publish_many(events)
        published += len(events)
        after = page[-1][1].id
