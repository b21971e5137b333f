"""The FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from infra.db.engine import Database
from infra.files import open_file_store
from infra.kafka.publisher import Publisher
from infra.redis import JobStreams
from infra.settings import Settings
from producers.ingress import audit, batches, errors, files, health, jobs, openai_errors
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
        file_store = open_file_store(settings)
        app.state.services = Services(settings, db, streams, publisher, file_store)
        app.state.key_cache = KeyCache()
        try:
            yield
        finally:
            await file_store.close()
            await publisher.stop()
            await streams.close()
            await db.close()

    app = FastAPI(title="Ayush ingress", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    openai_errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(audit.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    return app
