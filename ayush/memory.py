"""Wiring of the memory tools the `ayush memory` commands run."""

from __future__ import annotations

import uuid

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from infra.vectors.factory import build_embedder
from producers.memory_reembed import reembed


async def reembed_all(settings: Settings, tenant_id: uuid.UUID | None = None) -> tuple[int, str]:
    _, database_url, _ = settings.require_services()
    model = build_embedder(settings).model
    db = Database(database_url, pool_size=2)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        return await reembed(db, publisher, model, tenant_id), model
    finally:
        await publisher.stop()
        await db.close()
