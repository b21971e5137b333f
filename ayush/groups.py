"""Every consumer group this deployment can run, and how to build its handlers."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from consumers import (
    archive,
    batch,
    batch_lane,
    integrations,
    job_projection,
    memory,
    model_calls,
    usage,
    usage_projection,
    webhook_router,
)
from consumers.memory import projection as memory_projection
from infra.budget_holds import BudgetHolds
from infra.connectors import build_connectors
from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.db.engine import Database
from infra.errors import PermanentError
from infra.files import open_file_store
from infra.kafka.policies import Batches, Each, Policy, Timer
from infra.kafka.publisher import Publisher
from infra.kafka.routes import Route
from infra.pricing import PriceTable
from infra.providers import tokens
from infra.providers.base import ChatProvider
from infra.rate_windows import RateWindows
from infra.redis import JobStreams, ResponseCache
from infra.routing.catalog import ModelCatalog
from infra.routing.config import RetryPolicy, RoutingConfig, load_routing
from infra.routing.gateway import Gateway
from infra.s3 import ObjectStore
from infra.settings import Settings
from infra.telemetry.providers import ObservedProvider
from infra.vault import Vault
from infra.vectors.factory import build_memory
from infra.vectors.recall import StoreRecall

Routes = Mapping[str, Route]


@dataclass(frozen=True)
class Wiring:
    """What a live group runs: its routes, and its periodic work if it has any."""

    routes: Routes
    timer: Timer | None = None


Build = Callable[[Settings, Publisher, AsyncExitStack], Awaitable[Wiring]]
# Routes in replay side mode: no provider, vendor, stream or Kafka effects.
BuildReplay = Callable[[Settings, AsyncExitStack], Awaitable[Routes]]


def _nothing(settings: Settings) -> Policy:
    return Each(1)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    topics: list[str]
    policy: Callable[[Settings], Policy] = _nothing
    # The module's routes, given its ports (they only close over them): docs/groups.md.
    routes: Callable[[Any], Routes] | None = None
    build: Build | None = None
    replay: BuildReplay | None = None


def load_routing_config(settings: Settings) -> RoutingConfig:
    """The routing file (or the family defaults), with the retry defaults of the settings."""
    return load_routing(
        settings.routing_file,
        RetryPolicy(
            max_attempts=settings.provider_max_attempts,
            backoff_initial_s=settings.provider_backoff_initial_s,
            backoff_max_s=settings.provider_backoff_max_s,
        ),
    )


def _prices(settings: Settings) -> PriceTable:
    """The shipped prices, the prices file's, then the routing file's."""
    return load_catalog(settings).prices


def _database(settings: Settings, stack: AsyncExitStack, pool_size: int) -> Database:
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=pool_size)
    stack.push_async_callback(db.close)
    return db


def load_catalog(settings: Settings) -> ModelCatalog:
    """The models a job may name and their prices: the routing file over the price tables."""
    return ModelCatalog(load_routing_config(settings), PriceTable.load(settings.prices_file))


def _gateway(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Gateway:
    """The routing file's deployments, with the catalog that admits and prices their calls."""
    catalog = load_catalog(settings)

    def observed(client: ChatProvider) -> ChatProvider:
        # Every call traced and counted, whatever the vendor or deployment.
        return ObservedProvider(client, publisher.metrics, catalog)

    gateway = Gateway(
        catalog.routing,
        default_timeout_s=settings.provider_timeout_s,
        local_delay_s=settings.local_echo_delay_s,
        wrap_chat=observed,
        catalog=catalog,
    )
    stack.push_async_callback(gateway.close)
    # A stream without usage is counted with the tokenizer: load it before the
    # first such call rather than inside it.
    tokens.warm()
    return gateway


async def _model_calls_ports(
    settings: Settings,
    publisher: Publisher,
    stack: AsyncExitStack,
    replay: bool,
    *,
    concurrency: int | None = None,
) -> model_calls.Ports:
    concurrency = concurrency or settings.model_calls_concurrency
    db = _database(settings, stack, max(5, concurrency // 4))
    streams = JobStreams(settings, max_connections=concurrency * 2)
    stack.push_async_callback(streams.close)
    gateway = _gateway(settings, publisher, stack)
    cache = ResponseCache(streams, settings, publisher.metrics)
    recall = None
    if not replay:  # replay routes and stops: it never calls a model, so recalls nothing
        backend = build_memory(settings, db)
        stack.push_async_callback(backend.close)
        recall = StoreRecall(backend)
    return model_calls.Ports(
        settings, db, streams, publisher, gateway, cache,
        replay=replay, recall=recall,
    )  # fmt: skip


async def _model_calls(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    return Wiring(model_calls.handlers(await _model_calls_ports(settings, publisher, stack, False)))


def _lower_priority(settings: Settings) -> None:
    """Batch work yields the CPU to interactive work on the same machine."""
    if settings.batch_nice:
        os.nice(settings.batch_nice)


async def _batch_lane(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    _lower_priority(settings)
    gateway = _gateway(settings, publisher, stack)
    ports = batch_lane.Ports(_database(settings, stack, 2), publisher, gateway)
    return Wiring(batch_lane.handlers(ports))


async def _batch(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    _lower_priority(settings)
    streams = JobStreams(settings, max_connections=8)
    stack.push_async_callback(streams.close)
    files = open_file_store(settings)
    stack.push_async_callback(files.close)
    holds = BudgetHolds(settings, max_connections=4)
    stack.push_async_callback(holds.close)
    db = _database(settings, stack, 2)
    ports = batch.Ports(settings, db, streams, publisher, files, holds, load_catalog(settings))

    async def expire_due() -> None:
        await batch.expire_due(ports)

    return Wiring(batch.handlers(ports), Timer(settings.batch_expiry_check_s, expire_due))


class ReplayPublisher(Publisher):
    """Stands in for the publisher in replay: publishing there is a bug, so it fails loudly."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def publish(self, topic: str, envelope: Any, extra_headers: Any = None) -> None:
        raise PermanentError(f"replay mode publishes nothing (tried {topic})")

    async def publish_many(self, items: Any) -> None:
        raise PermanentError("replay mode publishes nothing")

    async def send(self, full_topic: str, value: bytes, *, key: Any, headers: Any) -> None:
        raise PermanentError(f"replay mode publishes nothing (tried {full_topic})")


async def _model_calls_replay(settings: Settings, stack: AsyncExitStack) -> Routes:
    ports = await _model_calls_ports(settings, ReplayPublisher(settings), stack, True)
    return model_calls.handlers(ports)


async def _job_projection_replay(settings: Settings, stack: AsyncExitStack) -> Routes:
    return job_projection.handlers(job_projection.Ports(_database(settings, stack, 5)))


async def _usage_projection_replay(settings: Settings, stack: AsyncExitStack) -> Routes:
    return usage_projection.handlers(usage_projection.Ports(_database(settings, stack, 2)))


async def _memory_projection_replay(settings: Settings, stack: AsyncExitStack) -> Routes:
    db = _database(settings, stack, 2)
    return memory_projection.handlers(memory_projection.Ports(settings, db))


async def _archive(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    store = await ObjectStore(settings).start()
    stack.push_async_callback(store.close)
    await store.ensure_bucket()
    return Wiring(archive.handlers(archive.Ports(settings, _database(settings, stack, 2), store)))


async def _memory(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    db = _database(settings, stack, max(5, settings.memory_concurrency // 2))
    backend = build_memory(settings, db)
    stack.push_async_callback(backend.close)
    ports = memory.Ports(
        settings, db, backend.embedder, backend.store, publisher=publisher,
        prices=_prices(settings),
    )  # fmt: skip
    return Wiring(memory.handlers(ports))


async def _usage(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    holds = BudgetHolds(settings, max_connections=4)
    stack.push_async_callback(holds.close)
    ports = usage.Ports(settings, _database(settings, stack, 2), holds, publisher)
    return Wiring(usage.handlers(ports))


async def _integrations(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> Wiring:
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=max(5, settings.integrations_concurrency // 4))
    stack.push_async_callback(db.close)
    streams = JobStreams(settings, max_connections=settings.integrations_concurrency * 2)
    stack.push_async_callback(streams.close)
    cap = settings.connector_max_response_bytes
    http = VendorHttp(settings.connector_timeout_s, max_response_bytes=cap)
    stack.push_async_callback(http.close)
    policy = AddressPolicy.parse(settings.connector_allow_private, settings.connector_allow)
    open_http = VendorHttp(settings.connector_timeout_s, policy, max_response_bytes=cap)
    stack.push_async_callback(open_http.close)
    vault = Vault.from_setting(settings.encryption_keys)
    connectors = build_connectors(settings, http, open_http)
    return Wiring(
        integrations.handlers(
            integrations.Ports(settings, db, streams, publisher, vault, connectors)
        )
    )


async def _webhook_router(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> Wiring:
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=5)
    stack.push_async_callback(db.close)
    streams = JobStreams(settings, max_connections=32)
    stack.push_async_callback(streams.close)
    holds, windows = BudgetHolds(settings, 8), RateWindows(settings, 8)
    stack.push_async_callback(holds.close)
    stack.push_async_callback(windows.close)
    limits = webhook_router.Limits(settings, holds, windows, load_catalog(settings))
    return Wiring(webhook_router.handlers(webhook_router.Ports(db, streams, publisher, limits)))


def _each(concurrency: Callable[[Settings], int]) -> Callable[[Settings], Policy]:
    return lambda settings: Each(concurrency(settings))


GROUPS: dict[str, GroupSpec] = {
    model_calls.GROUP: GroupSpec(
        model_calls.GROUP,
        model_calls.TOPICS,
        _each(lambda s: s.model_calls_concurrency),
        build=_model_calls,
        replay=_model_calls_replay,
        routes=model_calls.handlers,
    ),
    archive.GROUP: GroupSpec(
        archive.GROUP,
        archive.TOPICS,
        lambda s: Batches(s.archive_batch_events, s.archive_batch_age_s),
        build=_archive,
        routes=archive.handlers,
    ),
    # A wave is one poll: never more lines than may be in flight at once.
    batch_lane.GROUP: GroupSpec(
        batch_lane.GROUP,
        batch_lane.TOPICS,
        lambda s: Batches(s.batch_lane_concurrency),
        build=_batch_lane,
        routes=batch_lane.handlers,
    ),
    batch.GROUP: GroupSpec(
        batch.GROUP,
        batch.TOPICS,
        lambda s: Batches(s.batch_progress_max),
        build=_batch,
        routes=batch.handlers,
    ),
    usage.GROUP: GroupSpec(
        usage.GROUP,
        usage.TOPICS,
        lambda s: Batches(s.usage_batch_max),
        build=_usage,
        routes=usage.handlers,
    ),
    integrations.GROUP: GroupSpec(
        integrations.GROUP,
        integrations.TOPICS,
        _each(lambda s: s.integrations_concurrency),
        build=_integrations,
        routes=integrations.handlers,
    ),
    webhook_router.GROUP: GroupSpec(
        webhook_router.GROUP,
        webhook_router.TOPICS,
        _each(lambda s: 16),
        build=_webhook_router,
        routes=webhook_router.handlers,
    ),
    memory.GROUP: GroupSpec(
        memory.GROUP,
        memory.TOPICS,
        _each(lambda s: s.memory_concurrency),
        build=_memory,
        routes=memory.handlers,
    ),
}

# Groups that only run in replay, to rebuild projections from events alone.
REPLAY_GROUPS: dict[str, GroupSpec] = {
    job_projection.GROUP: GroupSpec(
        job_projection.GROUP,
        job_projection.TOPICS,
        replay=_job_projection_replay,
        routes=job_projection.handlers,
    ),
    usage_projection.GROUP: GroupSpec(
        usage_projection.GROUP,
        usage_projection.TOPICS,
        replay=_usage_projection_replay,
        routes=usage_projection.handlers,
    ),
    memory_projection.GROUP: GroupSpec(
        memory_projection.GROUP,
        memory_projection.TOPICS,
        replay=_memory_projection_replay,
        routes=memory_projection.handlers,
    ),
}

# The live groups whose side mode is the rebuild of their projection.
REPLAY_ALIASES: dict[str, str] = {
    usage.GROUP: usage_projection.GROUP,
    memory.GROUP: memory_projection.GROUP,
}
