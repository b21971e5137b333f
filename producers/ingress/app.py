"""The FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from infra.redis import JobStreams
from infra.settings import Settings
from infra.vectors.factory import build_memory
from producers.ingress import audit, errors, health, jobs, memories
from producers.ingress.auth import KeyCache
from producers.ingress.state import Services


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _, database_url, _ = settings.require_services()
        db = Database(database_url)
        streams = JobStreams(settings)
        publisher = Publisher(settings)
        await publisher.start()
        memory = build_memory(settings, db)
        app.state.services = Services(settings, db, streams, publisher, memory)
        app.state.key_cache = KeyCache()
        try:
            yield
        finally:
            await memory.close()
            await publisher.stop()
            await streams.close()
            await db.close()

    app = FastAPI(title="Ayush ingress", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(audit.router)
    app.include_router(memories.router)
    return app
