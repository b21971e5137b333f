"""Which provider serves a model name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.errors import PermanentError
from infra.providers.base import ChatProvider

# An explicit "<provider>/<model>" always wins; otherwise the model's family.
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(gpt-|chatgpt-|o\d|text-|ft:gpt-)"), "openai"),
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^local-"), "local"),
)


@dataclass(frozen=True)
class Route:
    provider: str
    model: str  # the name the provider is called with


def route(model: str) -> Route:
    if "/" in model:
        provider, _, name = model.partition("/")
        if provider in ("openai", "anthropic", "local") and name:
            return Route(provider, name)
    for pattern, provider in _FAMILIES:
        if pattern.match(model):
            return Route(provider, model)
    raise PermanentError(
        f"unknown model {model!r}: use gpt-*/o*, claude-*, local-* "
        "or name the provider, as in 'openai/llama3'"
    )


class ProviderSet:
    """The providers of one worker process, by name."""

    def __init__(self, providers: dict[str, ChatProvider]) -> None:
        self._providers = providers

    def resolve(self, model: str) -> tuple[ChatProvider, str]:
        target = route(model)
        provider = self._providers.get(target.provider)
        if provider is None:
            raise PermanentError(f"provider {target.provider!r} is not configured here")
        return provider, target.model

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
