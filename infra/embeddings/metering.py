"""Embedding calls are billed like model calls: each is one `usage.recorded`.

The memory group (a remember), the ingress (a memory search) and the
model-calls group (a chat job's recall) each embed with the configured
embedder; each call is counted with the tokenizer (cl100k_base, the one
OpenAI's embedding models use) and priced at the embedding model's price.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from infra.pricing import PriceTable
from infra.providers.tokens import estimate_texts
from schemas.jobs import UsageRecorded


def embedding_usage(
    usage_id: uuid.UUID,
    texts: Sequence[str],
    *,
    purpose: str,
    provider: str,
    model: str,
    prices: PriceTable,
    api_key_id: uuid.UUID | None,
    user_id: str | None,
) -> UsageRecorded:
    """The usage of embedding `texts` ("remember", "search" or "recall"). `usage_id` is
    the hold the ingress reserved under (the memory's or the search's id): this settles it."""
    tokens = estimate_texts(texts)
    return UsageRecorded(
        job_id=usage_id,
        api_key_id=api_key_id,
        user_id=user_id,
        kind="embedding",
        provider=provider,
        model=model,
        input_tokens=tokens,
        output_tokens=0,
        cost_usd=prices.cost(model, tokens, 0),
        extra={"purpose": purpose},
    )
