"""Every consumer group this deployment can run, and how to build its handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

from consumers import model_calls
from infra.db.engine import Database
from infra.kafka.consumer import Handler
from infra.kafka.publisher import Publisher
from infra.pricing import PriceTable
from infra.providers.anthropic import AnthropicProvider
from infra.providers.local import LocalProvider
from infra.providers.openai import OpenAIProvider
from infra.providers.router import ProviderSet
from infra.redis import JobStreams
from infra.settings import Settings


@dataclass(frozen=True)
class GroupSpec:
    name: str
    topics: list[str]
    concurrency: Callable[[Settings], int]
    build: Callable[[Settings, Publisher, AsyncExitStack], Awaitable[Mapping[str, Handler]]]


def build_providers(settings: Settings) -> ProviderSet:
    return ProviderSet(
        {
            "openai": OpenAIProvider(timeout_s=settings.provider_timeout_s),
            "anthropic": AnthropicProvider(timeout_s=settings.provider_timeout_s),
            "local": LocalProvider(delay_s=settings.local_echo_delay_s),
        }
    )


async def _model_calls(
    settings: Settings, publisher: Publisher, stack: AsyncExitStack
) -> Mapping[str, Handler]:
    _, database_url, _ = settings.require_services()
    db = Database(database_url, pool_size=max(5, settings.model_calls_concurrency // 4))
    stack.push_async_callback(db.close)
    streams = JobStreams(settings, max_connections=settings.model_calls_concurrency * 2)
    stack.push_async_callback(streams.close)
    providers = build_providers(settings)
    stack.push_async_callback(providers.close)
    prices = PriceTable.load(settings.prices_file)
    return model_calls.handlers(
        model_calls.Ports(settings, db, streams, publisher, providers, prices)
    )


GROUPS: dict[str, GroupSpec] = {
    model_calls.GROUP: GroupSpec(
        model_calls.GROUP,
        model_calls.TOPICS,
        lambda s: s.model_calls_concurrency,
        _model_calls,
    ),
}
