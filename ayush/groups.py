"""Every consumer group this deployment can run, and how to build the ports of each.

The groups declare themselves (consumers/groups/*/group.py, consumers/projections/);
this module only builds the adapters their handlers are given.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from consumers.groups.alerts import group as alerts
from consumers.groups.archive import group as archive
from consumers.groups.batch import group as batch
from consumers.groups.integrations import group as integrations
from consumers.groups.memory import group as memory
from consumers.groups.model_calls import group as model_calls
from consumers.groups.model_calls_batch import group as model_calls_batch
from consumers.groups.notifications import group as notifications
from consumers.groups.notifications.dispatcher import Dispatcher
from consumers.groups.scheduler import group as scheduler
from consumers.groups.usage import group as usage
from consumers.groups.webhook_router import group as webhook_router
from consumers.projections import conversations as conversation_projection
from consumers.projections import jobs as job_projection
from consumers.projections import memory as memory_projection
from consumers.projections import usage as usage_projection
from infra.budget_holds import BudgetHolds
from infra.channels import Channels
from infra.connectors import build_connectors
from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.connectors.outbound_webhook import WebhookSender
from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.semantic_cache import SemanticCacheStore
from infra.errors import PermanentError
from infra.files import open_file_store
from infra.kafka.group import Group
from infra.kafka.publisher import Publisher
from infra.kafka.status import group_lag
from infra.live_streams import JobStreams
from infra.pricing import PriceTable
from infra.providers import tokens
from infra.providers.base import ChatProvider
from infra.rate_windows import RateWindows
from infra.replies import ResponseCache
from infra.routing.catalog import ModelCatalog
from infra.routing.config import RetryPolicy, RoutingConfig, load_routing
from infra.routing.gateway import Gateway
from infra.s3 import ObjectStore
from infra.settings import Settings
from infra.telemetry.providers import ObservedProvider
from infra.vault import Vault
from infra.vectors.factory import build_memory
from infra.vectors.recall import StoreRecall

# A group's ports, live: the adapters its handlers are given.
Build = Callable[[Settings, Publisher, AsyncExitStack], Awaitable[Any]]
# Its ports in replay side mode: no provider, vendor, stream or Kafka effects.
BuildReplay = Callable[[Settings, AsyncExitStack], Awaitable[Any]]


@dataclass(frozen=True)
class Wired:
    """A group (declared in its own module) and how this deployment builds its ports."""

    group: Group[Any]
    build: Build | None = None
    replay: BuildReplay | None = None

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def topics(self) -> list[str]:
        return self.group.topics


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
    channels = None
    semantic = None
    if not replay:  # replay routes and stops: it never calls a model, so recalls nothing
        backend = build_memory(settings, db)
        stack.push_async_callback(backend.close)
        recall = StoreRecall(backend)
        semantic = model_calls.SemanticCache(backend.embedder, SemanticCacheStore(db))
        channels = Channels(settings, max_connections=concurrency)
        stack.push_async_callback(channels.close)
    return model_calls.Ports(
        settings,
        db,
        streams,
        publisher,
        gateway,
        cache,
        replay=replay,
        recall=recall,
        channels=channels,
        semantic=semantic,
    )


async def _model_calls(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> model_calls.Ports:
    return await _model_calls_ports(settings, publisher, stack, False)


def _lower_priority(settings: Settings) -> None:
    """Batch work yields the CPU to interactive work on the same machine."""
    if settings.batch_nice:
        os.nice(settings.batch_nice)


async def _model_calls_batch(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> model_calls_batch.Ports:
    _lower_priority(settings)
    gateway = _gateway(settings, publisher, stack)
    return model_calls_batch.Ports(_database(settings, stack, 2), publisher, gateway)


async def _batch(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> batch.Ports:
    _lower_priority(settings)
    streams = JobStreams(settings, max_connections=8)
    stack.push_async_callback(streams.close)
    files = open_file_store(settings)
    stack.push_async_callback(files.close)
    holds = BudgetHolds(settings, max_connections=4)
    stack.push_async_callback(holds.close)
    db = _database(settings, stack, 2)
    return batch.Ports(settings, db, streams, publisher, files, holds, load_catalog(settings))


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


async def _model_calls_replay(settings: Settings, stack: AsyncExitStack) -> model_calls.Ports:
    return await _model_calls_ports(settings, ReplayPublisher(settings), stack, True)


async def _job_projection_replay(settings: Settings, stack: AsyncExitStack) -> Database:
    return _database(settings, stack, 5)


async def _usage_projection_replay(settings: Settings, stack: AsyncExitStack) -> Database:
    return _database(settings, stack, 2)


async def _conversation_projection_replay(settings: Settings, stack: AsyncExitStack) -> Database:
    return _database(settings, stack, 2)


async def _memory_projection_replay(settings: Settings, stack: AsyncExitStack) -> memory.Ports:
    return memory_projection.projection_ports(settings, _database(settings, stack, 2))


async def _archive(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> archive.Ports:
    store = await ObjectStore(settings).start()
    stack.push_async_callback(store.close)
    await store.ensure_bucket()
    return archive.Ports(settings, _database(settings, stack, 2), store)


async def _memory(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> memory.Ports:
    db = _database(settings, stack, 5)  # one list at a time (a failed list's events, alone)
    backend = build_memory(settings, db)
    stack.push_async_callback(backend.close)
    return memory.Ports(
        settings, db, backend.embedder, backend.store, publisher=publisher, prices=_prices(settings)
    )


async def _usage(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> usage.Ports:
    holds = BudgetHolds(settings, max_connections=4)
    stack.push_async_callback(holds.close)
    return usage.Ports(settings, _database(settings, stack, 2), holds, publisher)


async def _integrations(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> integrations.Ports:
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
    return integrations.Ports(settings, db, streams, publisher, vault, connectors)


async def _webhook_router(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> webhook_router.Ports:
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=5)
    stack.push_async_callback(db.close)
    streams = JobStreams(settings, max_connections=32)
    stack.push_async_callback(streams.close)
    holds, windows = BudgetHolds(settings, 8), RateWindows(settings, 8)
    stack.push_async_callback(holds.close)
    stack.push_async_callback(windows.close)
    limits = webhook_router.Limits(settings, holds, windows, load_catalog(settings))
    return webhook_router.Ports(db, streams, publisher, limits)


async def _notifications(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> notifications.Ports:
    db = _database(settings, stack, 10)
    policy = AddressPolicy.parse(settings.connector_allow_private, settings.connector_allow)
    sender = WebhookSender(policy, settings.webhook_timeout_s)
    stack.push_async_callback(sender.close)
    vault = Vault.from_setting(settings.encryption_keys)
    dispatcher = Dispatcher(settings, db, vault, sender, publisher)
    dispatcher.start()
    stack.push_async_callback(dispatcher.stop)
    return notifications.Ports(db, dispatcher)


async def _scheduler(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> scheduler.Ports:
    router = await _webhook_router(settings, publisher, stack)
    return scheduler.Ports(settings, router.db, publisher, scheduler.clock_of(settings), router)


async def _alerts(settings: Settings, publisher: Publisher, stack: AsyncExitStack) -> alerts.Ports:
    async def lag(name: str) -> int | None:
        """The group's lag as Kafka tells it now (None: no such group, or no answer)."""
        wired = GROUPS.get(name)
        return None if wired is None else await group_lag(settings, name, wired.topics)

    return alerts.Ports(settings, _database(settings, stack, 5), publisher, utcnow, lag)


def _by_name(*wired: Wired) -> dict[str, Wired]:
    return {w.name: w for w in wired}


GROUPS: dict[str, Wired] = _by_name(
    Wired(model_calls.group, _model_calls, _model_calls_replay),
    Wired(archive.group, _archive),
    Wired(model_calls_batch.group, _model_calls_batch),
    Wired(batch.group, _batch),
    Wired(usage.group, _usage),
    Wired(integrations.group, _integrations),
    Wired(webhook_router.group, _webhook_router),
    Wired(memory.group, _memory),
    Wired(notifications.group, _notifications),
    Wired(scheduler.group, _scheduler),
    Wired(alerts.group, _alerts),
)

# Groups that only run in replay, to rebuild projections from events alone.
REPLAY_GROUPS: dict[str, Wired] = _by_name(
    Wired(job_projection.group, replay=_job_projection_replay),
    Wired(usage_projection.group, replay=_usage_projection_replay),
    Wired(memory_projection.group, replay=_memory_projection_replay),
    Wired(conversation_projection.group, replay=_conversation_projection_replay),
)

# The live groups whose side mode is the rebuild of their projection.
REPLAY_ALIASES: dict[str, str] = {
    usage.group.name: usage_projection.group.name,
    memory.group.name: memory_projection.group.name,
}
