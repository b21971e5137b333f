"""Which provider family serves a model name: the routing default when no file names it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.errors import PermanentError

# An explicit "<provider>/<model>" always wins; otherwise the model's family.
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Google's, though OpenAI's embedders are text-* too: before them.
    (re.compile(r"^text-embedding-004$"), "gemini"),
    (re.compile(r"^(gpt-|chatgpt-|o\d|text-|ft:gpt-)"), "openai"),
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^local-"), "local"),
    (re.compile(r"^gemini-"), "gemini"),
    # The default memory embedder (infra/embeddings/minilm.py) runs on our own CPU.
    (re.compile(r"^all-MiniLM-L6-v2-int8$"), "local"),
    # Bedrock's model ids (vendor.model-version:n), inference profiles too (us.anthropic...).
    (
        re.compile(
            r"^((us|us-gov|eu|apac|jp|au|ca|global)\.)?"
            r"(anthropic|meta|mistral|amazon|cohere|ai21|deepseek|writer)\.[\w.:-]+$"
        ),
        "bedrock",
    ),
)


@dataclass(frozen=True)
class Route:
    provider: str
    model: str  # the name the provider is called with


def route(model: str) -> Route:
    if "/" in model:
        provider, _, name = model.partition("/")
        if provider in ("openai", "anthropic", "local", "bedrock", "gemini") and name:
            return Route(provider, name)
    for pattern, provider in _FAMILIES:
        if pattern.match(model):
            return Route(provider, model)
    raise PermanentError(
        f"unknown model {model!r}: use gpt-*/o*, claude-*, gemini-*, local-* "
        "or name the provider, as in 'openai/llama3'"
    )
