"""The FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from infra.redis import JobStreams
from infra.settings import Settings
from infra.telemetry.metrics import Metrics
from producers.ingress import audit, docs, errors, health, jobs
from producers.ingress.auth import KeyCache
from producers.ingress.observability import OpenStreams, TelemetryMiddleware
from producers.ingress.state import Services

VERSION = "0.1.0"


def create_app(settings: Settings, streams: OpenStreams | None = None) -> FastAPI:
    """The ingress; `streams` lets the server end open event streams when it stops."""
    metrics = Metrics() if settings.telemetry_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _, database_url, _ = settings.require_services()
        db = Database(database_url)
        streams = JobStreams(settings)
        publisher = Publisher(settings, metrics)
        await publisher.start()
        app.state.services = Services(settings, db, streams, publisher)
        app.state.key_cache = KeyCache()
        try:
            yield
        finally:
            await publisher.stop()
            await streams.close()
            await db.close()

    app = FastAPI(
        title="Ayush ingress",
        version=VERSION,
        lifespan=lifespan,
        # One server span and one set of HTTP series per request: ours, which
        # also track event streams; FastAPI's own would duplicate them.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.metrics = metrics
    app.add_middleware(
        TelemetryMiddleware,
        metrics=metrics,
        streams=streams if streams is not None else OpenStreams(),
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(audit.router)
    app.include_router(docs.router)
    return app
