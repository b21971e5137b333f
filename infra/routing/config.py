"""The routing file (TOML, path in AYUSH_ROUTING_FILE), parsed into plain data.

Without a file every model goes to its family's provider (gpt-*/o* to
OpenAI, claude-* to Anthropic, local-* to the local models), configured by
the vendors' own variables. A file adds aliases, several weighted
deployments per model, fallback chains, limits and prices (or `free = true`
for a model that costs nothing on purpose); models it does not name still
take the family default. See docs/routing.example.toml.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import PermanentError
from infra.pricing import FREE, Price, parse_context_window, parse_price
from infra.providers import presets
from infra.providers.router import route
from infra.routing.tiers import DEFAULT_AUTO, Route, parse_routes

PROVIDER_KINDS = ("openai", "anthropic", "local", "bedrock", "gemini", "azure")
# The wire API of an openai deployment: chat completions, or the Responses API.
OPENAI_APIS = ("chat", "responses")


@dataclass(frozen=True)
class Deployment:
    provider: str  # openai (or any OpenAI-compatible server) | anthropic | local | azure
    model: str  # the name the upstream is called with
    base_url: str | None = None
    api_key: str | None = None
    weight: float = 1.0
    max_concurrency: int | None = None
    timeout_s: float | None = None
    # openai only: "chat" (POST /chat/completions) or "responses" (POST /responses)
    api: str = "chat"
    # bedrock only: the AWS region (else AWS_REGION / AWS_DEFAULT_REGION)
    region: str | None = None
    # gemini only: a Google Cloud project (and location) sends the calls to Vertex AI
    project: str | None = None
    location: str | None = None
    # azure only: the deployment's name (default the model) and the `api-version`
    deployment: str | None = None
    api_version: str | None = None
    # An OpenAI-compatible vendor named by its preset (infra/providers/presets.py)
    preset: str | None = None

    @property
    def vendor(self) -> str:
        """Who answers, for usage and labels: the preset's name, else the provider."""
        return self.preset or self.provider

    @property
    def label(self) -> str:
        return f"{self.vendor}:{self.base_url or 'default'}:{self.deployment or self.model}"


@dataclass(frozen=True)
class ModelRoute:
    name: str
    deployments: tuple[Deployment, ...]
    fallbacks: tuple[str, ...] = ()
    max_attempts: int | None = None
    # Tokens of input plus output the model takes; over the price table's figure.
    context_window: int | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # A Retry-After longer than this is not waited for: the next model in the
    # fallback chain is tried at once (or the job fails with 429 if none).
    max_retry_after_s: float = 60.0


@dataclass(frozen=True)
class RoutingConfig:
    models: dict[str, ModelRoute] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prices: dict[str, Price] = field(default_factory=dict)
    # A cheap model that titles a conversation after its first turn; None: no titles.
    title_model: str | None = None
    # Named routes (`model: "auto"` …) that pick a model per request: infra.routing.tiers.
    routes: dict[str, Route] = field(default_factory=lambda: {"auto": DEFAULT_AUTO})

    def canonical(self, model: str) -> str:
        return self.aliases.get(model, model)

    def route_for(self, model: str) -> ModelRoute:
        """The named model's route, else its family's default; PermanentError if neither."""
        name = self.canonical(model)
        if name in self.models:
            return self.models[name]
        target = route(name)  # raises PermanentError for an unknown family
        return ModelRoute(name, (Deployment(target.provider, target.model),))

    def knows(self, model: str) -> bool:
        try:
            self.route_for(model)
        except PermanentError:
            return False
        return True

    def listed(self) -> list[str]:
        """The models this deployment names, aliases included."""
        return sorted({*self.models, *self.aliases})


def load_routing(path: Path | None, retry: RetryPolicy | None = None) -> RoutingConfig:
    """The routing of this deployment; `retry` gives the defaults a file may override."""
    retry = retry or RetryPolicy()
    if path is None:
        return RoutingConfig(retry=retry)
    data = tomllib.loads(Path(path).read_text())
    try:
        return _parse(data, retry)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"routing file {path}: {exc}") from exc


def _parse(data: dict[str, Any], defaults: RetryPolicy) -> RoutingConfig:
    retry_table = data.get("retry", {})
    retry = RetryPolicy(
        max_attempts=int(retry_table.get("max_attempts", defaults.max_attempts)),
        backoff_initial_s=float(retry_table.get("backoff_initial_s", defaults.backoff_initial_s)),
        backoff_max_s=float(retry_table.get("backoff_max_s", defaults.backoff_max_s)),
        max_retry_after_s=float(retry_table.get("max_retry_after_s", defaults.max_retry_after_s)),
    )
    models: dict[str, ModelRoute] = {}
    prices: dict[str, Price] = {}
    for name, table in data.get("models", {}).items():
        deployments = tuple(_deployment(name, d) for d in table.get("deployments", []))
        if not deployments:
            deployments = (_deployment(name, {}),)
        attempts = table.get("max_attempts")
        models[name] = ModelRoute(
            name,
            deployments,
            fallbacks=tuple(table.get("fallbacks", ())),
            max_attempts=int(attempts) if attempts is not None else None,
            context_window=_context_window(name, table.get("context_window")),
        )
        if "price" in table and "free" in table:
            raise ValueError(f"model {name!r}: a price or `free = true`, not both")
        if "price" in table:
            prices[name] = _price(name, table["price"])
        elif "free" in table:
            if table["free"] is not True:
                raise ValueError(f"model {name!r}: `free` can only be true")
            prices[name] = FREE
    for name, row in data.get("prices", {}).items():
        prices[name] = _price(name, row)
    aliases = {str(k): str(v) for k, v in data.get("aliases", {}).items()}
    title_model = data.get("conversations", {}).get("title_model")
    if title_model is not None and not isinstance(title_model, str):
        raise ValueError("conversations.title_model must be a model name")
    config = RoutingConfig(models, aliases, retry, prices, title_model)
    for name, model in models.items():
        for fallback in model.fallbacks:
            if not config.knows(fallback):
                raise ValueError(f"model {name!r} falls back to unknown model {fallback!r}")
    for alias, target in aliases.items():
        if not config.knows(target):
            raise ValueError(f"alias {alias!r} names unknown model {target!r}")
    if title_model is not None and not config.knows(title_model):
        raise ValueError(f"conversations.title_model names unknown model {title_model!r}")
    routes = parse_routes(data.get("routes", {}), config.knows)
    return RoutingConfig(models, aliases, retry, prices, title_model, routes)


def _deployment(model: str, table: dict[str, Any]) -> Deployment:
    provider = table.get("provider")
    upstream = table.get("model")
    if provider is None:
        try:
            target = route(upstream or model)
        except PermanentError as exc:
            raise ValueError(f"model {model!r} needs deployments with a provider: {exc}") from exc
        provider, upstream = target.provider, upstream or target.model
    preset = presets.PRESETS.get(provider)
    if provider not in PROVIDER_KINDS and preset is None:
        kinds = (*PROVIDER_KINDS, *presets.PRESETS)
        raise ValueError(f"model {model!r}: provider must be one of {kinds}")
    api_key = table.get("api_key")
    if api_key is None and "api_key_env" in table:
        api_key = os.environ.get(table["api_key_env"])
    base_url = table.get("base_url")
    if preset is not None:
        provider, base_url = "openai", presets.base_url(preset, base_url)
        api_key = presets.api_key(preset, api_key)
    if provider != "azure" and ("deployment" in table or "api_version" in table):
        raise ValueError(f"model {model!r}: `deployment`/`api_version` need provider azure")
    limit = table.get("max_concurrency")
    timeout = table.get("timeout_s")
    weight = float(table.get("weight", 1.0))
    if weight <= 0:
        raise ValueError(f"model {model!r}: weights must be positive")
    api = table.get("api", "chat")
    if api not in OPENAI_APIS:
        raise ValueError(f"model {model!r}: deployment `api` must be one of {OPENAI_APIS}")
    if api != "chat" and provider != "openai":
        raise ValueError(f"model {model!r}: deployment `api = {api!r}` needs provider openai")
    if table.get("region") is not None and provider != "bedrock":
        raise ValueError(f"model {model!r}: deployment `region` needs provider bedrock")
    return Deployment(
        provider=provider,
        model=upstream or model,
        base_url=base_url,
        api_key=api_key,
        weight=weight,
        max_concurrency=int(limit) if limit is not None else None,
        timeout_s=float(timeout) if timeout is not None else None,
        api=api,
        region=table.get("region"),
        project=_gemini_field(provider, model, table, "project"),
        location=_gemini_field(provider, model, table, "location"),
        deployment=table.get("deployment", upstream or model) if provider == "azure" else None,
        api_version=table.get("api_version"),
        preset=preset.name if preset is not None else None,
    )


def _gemini_field(provider: str, model: str, table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is not None and provider != "gemini":
        raise ValueError(f"model {model!r}: deployment `{key}` needs provider gemini")
    return str(value) if value is not None else None


def _context_window(model: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return parse_context_window(value)
    except ValueError as exc:
        raise ValueError(f"model {model!r}: {exc}") from exc


def _price(model: str, row: dict[str, Any]) -> Price:
    try:
        return parse_price(row)
    except ArithmeticError as exc:
        raise ValueError(f"model {model!r}: price {row!r} is not a number") from exc
    except ValueError as exc:
        raise ValueError(f"model {model!r}: {exc}") from exc
