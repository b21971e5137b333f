"""Every consumer group this deployment can run, and how to build its handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from consumers import archive, job_projection, model_calls
from infra.db.engine import Database
from infra.errors import PermanentError
from infra.kafka.batch_consumer import BatchConsumer
from infra.kafka.consumer import Handler
from infra.kafka.publisher import Publisher
from infra.pricing import PriceTable
from infra.providers.anthropic import AnthropicProvider
from infra.providers.base import ChatProvider
from infra.providers.local import LocalProvider
from infra.providers.openai import OpenAIProvider
from infra.providers.router import ProviderSet
from infra.redis import JobStreams
from infra.s3 import ObjectStore
from infra.settings import Settings
from infra.telemetry.metrics import Metrics
from infra.telemetry.providers import ObservedProvider

Build = Callable[[Settings, Publisher, AsyncExitStack], Awaitable[Mapping[str, Handler]]]
# Handlers in replay side mode: no provider, vendor, stream or Kafka effects.
BuildReplay = Callable[[Settings, AsyncExitStack], Awaitable[Mapping[str, Handler]]]
BuildBatch = Callable[[Settings, AsyncExitStack], Awaitable[BatchConsumer]]


@dataclass(frozen=True)
class GroupSpec:
    name: str
    topics: list[str]
    concurrency: Callable[[Settings], int]
    build: Build | None = None
    replay: BuildReplay | None = None
    # Groups that write in batches bring their own runner instead of handlers.
    batch: BuildBatch | None = None


def build_providers(
    settings: Settings, metrics: Metrics | None = None, prices: PriceTable | None = None
) -> ProviderSet:
    providers: dict[str, ChatProvider] = {
        "openai": OpenAIProvider(timeout_s=settings.provider_timeout_s),
        "anthropic": AnthropicProvider(timeout_s=settings.provider_timeout_s),
        "local": LocalProvider(delay_s=settings.local_echo_delay_s),
    }
    # Every call traced and counted, whatever the vendor.
    prices = prices or PriceTable.load(settings.prices_file)
    return ProviderSet(
        {name: ObservedProvider(p, metrics, prices) for name, p in providers.items()}
    )


def _database(settings: Settings, stack: AsyncExitStack, pool_size: int) -> Database:
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=pool_size)
    stack.push_async_callback(db.close)
    return db


async def _model_calls_ports(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack, replay: bool
) -> model_calls.Ports:
    db = _database(settings, stack, max(5, settings.model_calls_concurrency // 4))
    streams = JobStreams(settings, max_connections=settings.model_calls_concurrency * 2)
    stack.push_async_callback(streams.close)
    prices = PriceTable.load(settings.prices_file)
    providers = build_providers(settings, publisher.metrics, prices)
    stack.push_async_callback(providers.close)
    return model_calls.Ports(settings, db, streams, publisher, providers, prices, replay=replay)


async def _model_calls(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> Mapping[str, Handler]:
    return model_calls.handlers(await _model_calls_ports(settings, publisher, stack, False))


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


async def _model_calls_replay(settings: Settings, stack: AsyncExitStack) -> Mapping[str, Handler]:
    ports = await _model_calls_ports(settings, ReplayPublisher(settings), stack, True)
    return model_calls.handlers(ports)


async def _job_projection_replay(
    settings: Settings, stack: AsyncExitStack
) -> Mapping[str, Handler]:
    return job_projection.handlers(job_projection.Ports(_database(settings, stack, 5)))


async def _archive(settings: Settings, stack: AsyncExitStack) -> BatchConsumer:
    store = await ObjectStore(settings).start()
    stack.push_async_callback(store.close)
    await store.ensure_bucket()
    ports = archive.Ports(settings, _database(settings, stack, 2), store)

    async def flush(records: archive.Records) -> None:
        await archive.archive_batch(records, ports)

    return BatchConsumer(
        settings,
        group=archive.GROUP,
        topics=archive.TOPICS,
        flush=flush,
        max_events=settings.archive_batch_events,
        max_age_s=settings.archive_batch_age_s,
    )


GROUPS: dict[str, GroupSpec] = {
    model_calls.GROUP: GroupSpec(
        model_calls.GROUP,
        model_calls.TOPICS,
        lambda s: s.model_calls_concurrency,
        build=_model_calls,
        replay=_model_calls_replay,
    ),
    archive.GROUP: GroupSpec(archive.GROUP, archive.TOPICS, lambda s: 1, batch=_archive),
}

# Groups that only run in replay, to rebuild projections from events alone.
REPLAY_GROUPS: dict[str, GroupSpec] = {
    job_projection.GROUP: GroupSpec(
        job_projection.GROUP,
        job_projection.TOPICS,
        lambda s: 1,
        replay=_job_projection_replay,
    ),
}
