"""OpenAI-compatible vendors by name: `provider = "mistral"` in the routing file.

A preset fills in what a user would otherwise copy from the vendor's docs: the
base URL of its OpenAI-compatible API and the variable its key is read from.
The deployment then runs on the OpenAI provider (chat completions over the raw
HTTP client) and keeps the preset's name for usage and labels. A `base_url` or
`api_key`/`api_key_env` in the routing file still wins. None of these vendors'
models has a built-in price: give each a price in the routing file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from infra.errors import PermanentError


@dataclass(frozen=True)
class Preset:
    name: str
    base_url: str | None  # None: the routing file or `base_url_env` must say
    key_env: str | None  # None: the server takes no key
    base_url_env: str | None = None


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        Preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        Preset("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        Preset("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        Preset("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
        Preset("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        Preset("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        Preset("ollama", "http://localhost:11434/v1", None),
        Preset("vllm", None, None, base_url_env="VLLM_BASE_URL"),
    )
}
# Sent where a server takes no key: the header stays well-formed, and no other
# vendor's key (OPENAI_API_KEY) leaks to it.
NO_KEY = "not-set"


def base_url(preset: Preset, configured: str | None) -> str:
    """The routing file's base URL, else the preset's; ValueError when neither says."""
    url = configured or preset.base_url
    if url is None and preset.base_url_env:
        url = os.environ.get(preset.base_url_env)
    if not url:
        raise ValueError(f"provider {preset.name!r} needs `base_url` or {preset.base_url_env}")
    return url


def api_key(preset: Preset, configured: str | None) -> str | None:
    """The routing file's key, else the preset's variable (None while it is not set)."""
    if configured:
        return configured
    if preset.key_env is None:
        return NO_KEY
    return os.environ.get(preset.key_env)


def require_key(name: str, key: str | None) -> str:
    """The key a preset's call is sent with; PermanentError naming its variable when unset."""
    if key:
        return key
    preset = PRESETS[name]
    raise PermanentError(
        f"provider {name!r} needs an API key: set {preset.key_env} "
        "(or `api_key`/`api_key_env` on the deployment)",
        status=500,
    )
