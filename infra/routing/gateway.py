"""Running a call on a model's deployments: weights, limits, retries, fallbacks.

For one job: try the model's deployments (weighted, skipping ones that
are cooling down after a 429 or that are full), retrying transient
failures with exponential backoff and jitter, or exactly the vendor's
Retry-After; when a model's attempts are spent, go down its fallback
chain. Concurrency limits count calls of this worker process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from infra.embeddings import minilm
from infra.embeddings.bedrock import BedrockEmbedder
from infra.embeddings.gemini import GeminiEmbedder
from infra.embeddings.hashing import HashingEmbedder
from infra.embeddings.openai import OpenAIEmbedder
from infra.errors import AyushError, PermanentError, TransientError
from infra.pricing import PriceTable
from infra.providers import presets, tokens
from infra.providers.anthropic import AnthropicProvider
from infra.providers.azure import AzureOpenAIProvider, azure_wire
from infra.providers.base import ChatProvider, ChatRequest, Completion, OnDelta
from infra.providers.bedrock import BedrockProvider
from infra.providers.gemini import GeminiProvider
from infra.providers.local import LocalProvider
from infra.providers.openai import OpenAIProvider
from infra.providers.openai_http import Wire
from infra.providers.openai_responses import OpenAIResponsesProvider
from infra.routing.catalog import ModelCatalog
from infra.routing.config import Deployment, ModelRoute, RoutingConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
# Deployments of family-default routes kept alive (their cool-downs) at most:
# the routing file's are few, but default names are many.
MAX_DEFAULT_DEPLOYMENTS = 1024
OnRetry = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Served:
    """What answered: the public model name (after fallbacks) and the deployment."""

    model: str
    provider: str
    deployment: Deployment


class _Live:
    """A deployment with its client(s), its concurrency slots and its cool-down."""

    def __init__(self, spec: Deployment, chat: ChatProvider | None, embedder: Any) -> None:
        self.spec = spec
        self.chat = chat
        self.embedder = embedder
        self.slots = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        self.cool_until = 0.0

    def has_room(self) -> bool:
        return self.slots is None or not self.slots.locked()

    def cool_down(self, seconds: float | None) -> None:
        if seconds:
            self.cool_until = max(self.cool_until, time.monotonic() + seconds)


class Gateway:
    def __init__(
        self,
        config: RoutingConfig,
        *,
        default_timeout_s: float = 600.0,
        local_delay_s: float = 0.02,
        wrap_chat: Callable[[ChatProvider], ChatProvider] | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self.config = config
        # Every call is checked against it before any upstream is called, and priced by it.
        self.catalog = catalog or ModelCatalog(config, PriceTable.load())
        # Lets the composition root observe every chat client (traces, metrics).
        self._wrap_chat = wrap_chat
        self._timeout = default_timeout_s
        self._local_delay = local_delay_s
        self._live: dict[Deployment, _Live] = {}
        self._default_live: OrderedDict[Deployment, _Live] = OrderedDict()
        self._clients = AsyncExitStack()
        self._chat_clients: dict[tuple[Any, ...], ChatProvider] = {}

    # building clients ------------------------------------------------------------
    def _chat_client(self, d: Deployment) -> ChatProvider:
        timeout = d.timeout_s or self._timeout
        key = (
            d.provider, d.api, d.base_url, d.api_key, timeout,
            d.region, d.project, d.location, d.deployment, d.api_version,
        )  # fmt: skip
        client = self._chat_clients.get(key)
        if client is None:
            if d.preset is not None:  # no other vendor's key (OPENAI_API_KEY) may reach it
                d = replace(d, api_key=presets.require_key(d.preset, d.api_key))
            if d.provider == "openai" and d.api == "responses":
                client = OpenAIResponsesProvider(
                    name=d.vendor, api_key=d.api_key, base_url=d.base_url, timeout_s=timeout
                )
            elif d.provider == "openai":
                client = OpenAIProvider(
                    name=d.vendor, api_key=d.api_key, base_url=d.base_url, timeout_s=timeout
                )
            elif d.provider == "azure":
                client = AzureOpenAIProvider(name="azure", wire=self._azure(d), timeout_s=timeout)
            elif d.provider == "anthropic":
                client = AnthropicProvider(
                    api_key=d.api_key, base_url=d.base_url, timeout_s=timeout
                )
            elif d.provider == "bedrock":
                client = BedrockProvider(region=d.region, base_url=d.base_url, timeout_s=timeout)
            elif d.provider == "gemini":
                client = GeminiProvider(
                    api_key=d.api_key,
                    base_url=d.base_url,
                    project=d.project,
                    location=d.location,
                    timeout_s=timeout,
                )
            else:
                client = LocalProvider(delay_s=self._local_delay)
            if self._wrap_chat is not None:
                client = self._wrap_chat(client)
            self._clients.push_async_callback(client.close)
            self._chat_clients[key] = client
        return client

    @staticmethod
    def _azure(d: Deployment) -> Wire:
        return azure_wire(
            d.deployment or d.model,
            endpoint=d.base_url,
            api_version=d.api_version,
            api_key=d.api_key,
        )

    def _embedder(self, d: Deployment) -> Any:
        if d.provider in ("openai", "azure"):
            api_key = presets.require_key(d.preset, d.api_key) if d.preset else d.api_key
            embedder = OpenAIEmbedder(
                d.model,
                api_key=api_key,
                base_url=d.base_url,
                timeout_s=d.timeout_s or 60.0,
                wire=self._azure(d) if d.provider == "azure" else None,
                name=d.vendor,
            )
            self._clients.push_async_callback(embedder.close)
            return embedder
        if d.provider == "bedrock":
            bedrock = BedrockEmbedder(
                d.model, region=d.region, base_url=d.base_url, timeout_s=d.timeout_s or 60.0
            )
            self._clients.push_async_callback(bedrock.close)
            return bedrock
        if d.provider == "gemini":
            gemini = GeminiEmbedder(
                d.model,
                api_key=d.api_key,
                base_url=d.base_url,
                project=d.project,
                location=d.location,
                timeout_s=d.timeout_s or 60.0,
            )
            self._clients.push_async_callback(gemini.close)
            return gemini
        if d.provider == "local":
            if d.model == minilm.MODEL:
                return minilm.MiniLMEmbedder()  # the process's one session, loaded on first use
            return HashingEmbedder(model=d.model)
        raise PermanentError(f"{d.provider} serves no embeddings", status=400)

    def _deployments(self, route: ModelRoute) -> list[_Live]:
        if route.name not in self.config.models:
            return [self._default_deployment(route.deployments[0])]
        out = []
        for spec in route.deployments:
            live = self._live.get(spec)
            if live is None:
                live = _Live(spec, None, None)
                self._live[spec] = live
            out.append(live)
        return out

    def _default_deployment(self, spec: Deployment) -> _Live:
        """A family default's deployment; the least recently used are forgotten past a cap."""
        live = self._default_live.get(spec)
        if live is None:
            live = _Live(spec, None, None)
            self._default_live[spec] = live
            if len(self._default_live) > MAX_DEFAULT_DEPLOYMENTS:
                self._default_live.popitem(last=False)
        else:
            self._default_live.move_to_end(spec)
        return live

    # calling ---------------------------------------------------------------------
    async def chat(
        self, model: str, request: ChatRequest, on_delta: OnDelta, on_retry: OnRetry
    ) -> tuple[Completion, Served]:
        async def call(live: _Live) -> Completion:
            if live.chat is None:
                live.chat = self._chat_client(live.spec)
            return await live.chat.stream_chat(replace(request, model=live.spec.model), on_delta)

        return await self._run(model, call, on_retry)

    async def embed(
        self, model: str, texts: Sequence[str], dimensions: int | None, on_retry: OnRetry
    ) -> tuple[tuple[list[list[float]], int], Served]:
        async def call(live: _Live) -> tuple[list[list[float]], int]:
            if live.embedder is None:
                live.embedder = self._embedder(live.spec)
            if isinstance(live.embedder, (OpenAIEmbedder, GeminiEmbedder)):
                return await live.embedder.embed_counted(texts, dimensions)
            if isinstance(live.embedder, BedrockEmbedder):
                return await live.embedder.embed_counted(texts, dimensions)
            vectors = await live.embedder.embed(texts)
            return vectors, tokens.estimate_texts(texts)

        return await self._run(model, call, on_retry)

    async def _run(
        self, model: str, call: Callable[[_Live], Awaitable[T]], on_retry: OnRetry
    ) -> tuple[T, Served]:
        self.catalog.check(model)  # an unpriced model is refused before any upstream call
        chain = self._chain(model)
        policy = self.config.retry
        last: TransientError | None = None
        for index, route in enumerate(chain):
            attempts = route.max_attempts or policy.max_attempts
            for attempt in range(1, attempts + 1):
                live = self._pick(route)
                if last is not None:
                    await on_retry(
                        {
                            "status": "retrying" if attempt > 1 else "fallback",
                            "model": route.name,
                            "provider": live.spec.vendor,
                            "attempt": attempt,
                            "error": str(last),
                        }
                    )
                try:
                    result = await self._attempt(live, call)
                    return result, Served(route.name, live.spec.vendor, live.spec)
                except TransientError as exc:
                    last = exc
                    live.cool_down(exc.retry_after)
                    if attempt == attempts:
                        break
                    delay = self._delay(exc, attempt, more_models=index + 1 < len(chain))
                    if delay is None:
                        break  # the vendor asks for a longer pause than we wait: fall back
                    await asyncio.sleep(delay)
        assert last is not None
        raise last

    async def _attempt(self, live: _Live, call: Callable[[_Live], Awaitable[T]]) -> T:
        budget = live.spec.timeout_s or self._timeout
        async with AsyncExitStack() as stack:
            if live.slots is not None:
                await stack.enter_async_context(live.slots)
            try:
                async with asyncio.timeout(budget):
                    return await call(live)
            except TimeoutError as exc:
                raise TransientError(
                    f"{live.spec.provider}: no answer within {budget:g}s", status=504
                ) from exc
            except AyushError:
                raise
            except Exception as exc:
                # An adapter let something through: fail the job rather than
                # leave its caller waiting on a dead-lettered event.
                log.exception("unexpected error from %s", live.spec.label)
                raise PermanentError(
                    f"{live.spec.provider}: unexpected {type(exc).__name__}: {exc}", status=502
                ) from exc
        raise AssertionError("unreachable")

    def _delay(self, exc: TransientError, attempt: int, *, more_models: bool) -> float | None:
        policy = self.config.retry
        if exc.retry_after is not None:
            if exc.retry_after > policy.max_retry_after_s and more_models:
                return None
            return min(exc.retry_after, policy.max_retry_after_s)
        backoff = min(policy.backoff_initial_s * 2 ** (attempt - 1), policy.backoff_max_s)
        return backoff + random.uniform(0, policy.backoff_initial_s)

    def _chain(self, model: str) -> list[ModelRoute]:
        """The model's route, then its fallbacks' (depth first, each model once)."""
        chain: list[ModelRoute] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            route = self.config.route_for(name)
            if route.name in seen:
                return
            seen.add(route.name)
            chain.append(route)
            for fallback in route.fallbacks:
                visit(fallback)

        visit(model)
        return chain

    def _pick(self, route: ModelRoute) -> _Live:
        live = self._deployments(route)
        if len(live) == 1:
            return live[0]
        now = time.monotonic()
        ready = [d for d in live if d.cool_until <= now] or live
        roomy = [d for d in ready if d.has_room()] or ready
        return random.choices(roomy, weights=[d.spec.weight for d in roomy])[0]

    async def close(self) -> None:
        await self._clients.aclose()
