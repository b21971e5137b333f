"""The FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute

from infra.budget_holds import BudgetHolds
from infra.channels import Channels
from infra.connectors.address_policy import AddressPolicy
from infra.db.engine import Database
from infra.db.jobs import QueuedJobs
from infra.db.tenants import cors_origins_by_tenant
from infra.files import open_file_store
from infra.kafka.publisher import Publisher
from infra.key_events import KeyChanges
from infra.live_streams import JobStreams
from infra.pricing import PriceTable
from infra.rate_windows import RateWindows
from infra.replies import Replies
from infra.routing.catalog import ModelCatalog
from infra.routing.config import load_routing
from infra.settings import Settings
from infra.stream_slots import StreamSlots
from infra.telemetry.metrics import Metrics
from infra.vault import Vault
from infra.vectors.factory import build_memory
from producers.ingress import (
    access,
    actions,
    admission,
    alert_rules,
    audit,
    batches,
    budgets,
    connection_tools,
    connections,
    conversations,
    docs,
    errors,
    files,
    health,
    issuers,
    jobs,
    keys,
    live,
    live_socket,
    me,
    memories,
    messages,
    openai_compat,
    openai_errors,
    ratelimits,
    responses,
    schedules,
    tasks,
    tenant_settings,
    usage,
    user_limits,
    users,
    webhook_receiver,
    webhook_setup,
    webhook_subscriptions,
)
from producers.ingress import routing as routing_doors
from producers.ingress.auth import KeyCache
from producers.ingress.body import BodyLimit, api_routes, route_body
from producers.ingress.client_address import parse_networks
from producers.ingress.cors import AllowedOrigins, CorsMiddleware
from producers.ingress.key_uses import KeyUses
from producers.ingress.nul_guard import RefuseNul
from producers.ingress.observability import OpenStreams, TelemetryMiddleware
from producers.ingress.plain_route import PlainRoute, document_bodies
from producers.ingress.plain_route import json_body as documented_body
from producers.ingress.sign_in import SignIn
from producers.ingress.state import Services
from schemas.responses_api import ResponseRequest

VERSION = "0.1.0"


def create_app(settings: Settings, streams: OpenStreams | None = None) -> FastAPI:
    """The ingress; `streams` lets the server end open event streams when it stops."""
    metrics = Metrics() if settings.telemetry_enabled else None
    cors = AllowedOrigins(settings.cors_origin_list(), settings.cors_refresh_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _, database_url, _ = settings.require_services()
        # Its tenant reads run behind row-level security (infra.db.engine).
        db = Database(database_url, tenant_wall=True)
        streams = JobStreams(settings, read_connections=settings.max_streams_per_process)
        channels = Channels(settings, read_connections=settings.max_streams_per_process)
        slots = StreamSlots(settings)
        await slots.start()
        publisher = Publisher(settings, metrics)
        await publisher.start()
        file_store = open_file_store(settings)
        replies = Replies(settings, streams, poll_s=settings.gateway_reply_poll_s)
        await replies.start()
        routing = load_routing(settings.routing_file)
        catalog = ModelCatalog(routing, PriceTable.load(settings.prices_file))
        prices = catalog.prices
        memory = build_memory(settings, db)
        # Routes with a classifier ask a cheap model through it (producers.ingress.routing).
        classify = app.state.classify = routing_doors.classifier(catalog)
        app.state.services = Services(
            settings,
            db,
            streams,
            slots,
            publisher,
            replies,
            file_store,
            QueuedJobs(db),
            routing,
            prices,
            memory,
            catalog,
            channels,
        )
        key_cache = app.state.key_cache = KeyCache()
        # Revocations and rotations on any ingress reach this one's cache within a second.
        key_changes = app.state.key_changes = KeyChanges(settings)
        await key_changes.listen(key_cache)
        key_uses = app.state.key_uses = KeyUses(db)
        holds, windows = BudgetHolds(settings), RateWindows(settings)
        await ratelimits.restore(db, windows)
        await budgets.restore(db, holds)
        app.state.admission = admission.Admission(settings, db, holds, windows, prices, catalog)
        app.state.vault = Vault.from_setting(settings.encryption_keys)
        cors.attach(lambda: cors_origins_by_tenant(db))
        policy = AddressPolicy.parse(settings.connector_allow_private, settings.connector_allow)
        app.state.sign_in = SignIn(
            db, app.state.vault, policy, settings.jwt_leeway_s, settings.jwks_refetch_s
        )
        app.state.tool_lister = connection_tools.ToolLister(settings)
        # Metrics are for the operator: on a port of their own, never the API's.
        exporter = (
            metrics.serve(settings.metrics_port, settings.metrics_host)
            if metrics and settings.metrics_port
            else None
        )
        try:
            yield
        finally:
            cors.attach(None)
            if exporter is not None:
                exporter.close()
            await app.state.sign_in.close()
            await app.state.tool_lister.close()
            await memory.close()
            if classify is not None:
                await classify.close()
            await key_uses.close()
            await key_changes.close()
            await replies.stop()
            await windows.close()
            await holds.close()
            await file_store.close()
            await publisher.stop()
            await slots.close()
            await channels.close()
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
    app.state.cors = cors
    # Read once: a malformed setting stops the ingress at start, not at a request.
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    # Every route's body is capped (routes with a limit of their own say so).
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RefuseNul)
    # Outside the body and NUL checks, so their refusals carry the headers too.
    app.add_middleware(CorsMiddleware, origins=cors, max_age_s=settings.cors_max_age_s)
    app.add_middleware(
        TelemetryMiddleware,
        metrics=metrics,
        streams=streams if streams is not None else OpenStreams(),
    )
    errors.install(app)
    openai_errors.install(app)
    admission.install(app)
    app.include_router(health.router)
    # Every authenticated route counts against its key's requests per minute.
    limited = [Depends(admission.rate_limited)]
    # The busiest routes first and on the app itself: a request is matched
    # against the routes in order, and FastAPI re-checks an included router's
    # routes on every request that reaches it.
    plain_routes = [*openai_compat.router.routes, *messages.router.routes]
    for route in [*plain_routes, *responses.plain_router.routes]:
        assert isinstance(route, APIRoute)
        # A plain route admits its requests itself (see openai_compat).
        plain = isinstance(route, PlainRoute)
        app.router.add_api_route(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            name=route.name,
            tags=list(route.tags),
            dependencies=[] if plain else limited,
            route_class_override=type(route),
            openapi_extra=route.openapi_extra,
        )
    app.include_router(jobs.router, dependencies=limited)
    app.include_router(responses.router, dependencies=limited)
    app.include_router(usage.router, dependencies=limited)
    app.include_router(me.router, dependencies=limited)
    app.include_router(budgets.router, dependencies=limited)
    app.include_router(ratelimits.router, dependencies=limited)
    app.include_router(user_limits.budgets_router, dependencies=limited)
    app.include_router(user_limits.ratelimits_router, dependencies=limited)
    app.include_router(audit.router, dependencies=limited)
    app.include_router(files.router, dependencies=limited)
    app.include_router(batches.router, dependencies=limited)
    app.include_router(actions.router, dependencies=limited)
    app.include_router(connections.router, dependencies=limited)
    app.include_router(connection_tools.router, dependencies=limited)
    app.include_router(memories.router, dependencies=limited)
    app.include_router(users.router, dependencies=limited)
    app.include_router(conversations.router, dependencies=limited)
    app.include_router(webhook_setup.router, dependencies=limited)
    app.include_router(webhook_subscriptions.router, dependencies=limited)
    app.include_router(schedules.router, dependencies=limited)
    app.include_router(alert_rules.router, dependencies=limited)
    app.include_router(tasks.router, dependencies=limited)
    app.include_router(tenant_settings.router, dependencies=limited)
    app.include_router(issuers.router, dependencies=limited)
    app.include_router(keys.router, dependencies=limited)
    app.include_router(live.router, dependencies=limited)
    app.include_router(routing_doors.router, dependencies=limited)
    # The live WebSocket authenticates at its handshake (producers.ingress.live_socket).
    app.state.socket_stats = live_socket.SocketStats(metrics)
    app.add_api_websocket_route("/v1/ws", live_socket.live_socket, name="live_socket")
    # Webhook senders sign their deliveries; they have no API key to limit.
    app.include_router(webhook_receiver.router)
    # The contract documents are public, like the health checks.
    app.include_router(docs.router)
    _document_bodies(app)
    served: list[APIRoute | APIWebSocketRoute] = [*api_routes(app.routes)]
    served += [r for r in app.routes if isinstance(r, APIWebSocketRoute)]
    access.check_complete([r for r in served if r.path.startswith("/v1/")])
    return app


def _document_bodies(app: FastAPI) -> None:
    """The bodies FastAPI never sees: the plain routes' and those read by `json_body`."""
    models = [body for _, body in openai_compat.PLAIN_ROUTES.values()]
    models += [body for _, body in messages.PLAIN_ROUTES.values()]
    models.append(ResponseRequest)
    for route in api_routes(app.routes):
        model = route_body(route)
        if model is not None:
            route.openapi_extra = {**(route.openapi_extra or {}), **documented_body(model)}
            models.append(model)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_bodies(generate(), models)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
