"""A job's answer: priced from what was served, or taken from the response cache."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from consumers.groups.model_calls.ports import Ports
from infra.db.jobs import Outcome
from infra.routing.gateway import Served
from schemas import jobs as job_events
from schemas.conversations import ContextSent


@dataclass
class Answer:
    result: Outcome
    embeddings: list[list[float]] | None = None
    # A response turn's: what of its history was sent to the model.
    context: ContextSent | None = None
    # Served by the semantic cache: the similarity of the cached question.
    similarity: float | None = None


def priced(
    request: job_events.JobRequested,
    served: Served,
    ports: Ports,
    text: str,
    finish_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    tool_calls: list[dict[str, Any]] | None,
    cached_input_tokens: int = 0,
    cache_write_input_tokens: int = 0,
) -> Outcome:
    # ModelNotPriced (the job fails) rather than a silent $0.
    cost = ports.gateway.catalog.cost(
        served.model,
        served.deployment.model,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_write_input_tokens,
    )
    return Outcome(
        job_id=request.job_id,
        text=text,
        finish_reason=finish_reason,
        provider=served.provider,
        model=served.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        tool_calls=tool_calls,
        cached_input_tokens=cached_input_tokens,
        cache_write_input_tokens=cache_write_input_tokens,
    )


# Labels, who asked, and which caches to use say nothing about the answer.
_NOT_KEYED = {"user_id", "metadata", "cache", "semantic_cache", "semantic_threshold"}


def cache_key(tenant_id: uuid.UUID, job: job_events.ChatJob, model: str) -> str:
    """Identical requests of one tenant share a key; labels and user ids do not count."""
    normal = job.model_dump(mode="json", exclude=_NOT_KEYED)
    normal["model"] = model
    digest = hashlib.sha256(orjson.dumps(normal, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{tenant_id}:{digest}"


def cache_entry(answer: Answer) -> dict[str, Any]:
    r = answer.result
    return {
        "text": r.text,
        "finish_reason": r.finish_reason,
        "provider": r.provider,
        "model": r.model,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "tool_calls": r.tool_calls,
        "embeddings": answer.embeddings,
    }


async def from_cache(request: job_events.JobRequested, key: str, ports: Ports) -> Answer | None:
    """An identical earlier answer, marked cached and free; None on a miss."""
    hit = await ports.cache.get(key)
    if hit is None:
        return None
    return Answer(cached_outcome(request, hit), hit.get("embeddings"))


def cached_outcome(request: job_events.JobRequested, hit: dict[str, Any]) -> Outcome:
    """A cache entry (`cache_entry`) as this job's result: free, and marked cached."""
    return Outcome(
        job_id=request.job_id,
        text=hit["text"],
        finish_reason=hit["finish_reason"],
        provider=hit["provider"],
        model=hit["model"],
        input_tokens=hit["input_tokens"],
        output_tokens=hit["output_tokens"],
        cost_usd=Decimal("0"),
        tool_calls=hit["tool_calls"],
        cached=True,
    )
