"""The semantic cache around a chat job: an earlier answer to a question of the same meaning.

What must match exactly goes into the partition key: the tenant, the model after
routing, every sampling parameter, the tools and output format, and the whole
conversation before its last turn (system prompt included). What may differ in
wording is the last turn, a user's text: that alone is embedded, with the memory
embedder. Embedding the whole conversation would let a long shared history
outweigh a different last question ("...and in Austria?" vs "...and in
Australia?"), and a different earlier turn could still pass as near; hashing the
history makes those misses certain and leaves the embedder to judge the question
it was measured on (bench/semantic_cache.py). The numbers of the last turn go
into the key too: an embedder barely tells "convert 5 km" from "convert 8 km",
and no threshold keeps them apart, so questions with other numbers never meet.

Never cached: a job that recalls a user's memories (its prompt holds that user's
notes), anything but a plain chat job (embeddings, response turns, whose history
the worker assembles), and a last turn that is not a user's text alone (images,
tool results). The embedding call of a lookup is billed like a recall's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from consumers.groups.model_calls.answers import Answer, cache_entry, cached_outcome
from consumers.groups.model_calls.outcomes import follow_up
from consumers.groups.model_calls.ports import Ports
from infra.db.semantic_cache import Entry
from infra.embeddings.metering import embedding_usage
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import derived_id

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# Fields that say nothing about the answer (labels, who asked, the cache choices), and
# the messages, which are hashed apart from the last one.
_NOT_KEYED = {
    "user_id",
    "metadata",
    "cache",
    "semantic_cache",
    "semantic_threshold",
    "messages",
}


@dataclass(frozen=True)
class Lookup:
    """A job's place in the semantic cache: its partition and its question's vector."""

    entry: Entry
    threshold: float


def question(job: job_events.ChatJob) -> str | None:
    """The text the cache compares, or None when the job may not use the cache (nor one
    whose built-in tools act on the user's things)."""
    if job.kind != "chat" or job.memory is not None or job.ayush_tools or not job.messages:
        return None
    last = job.messages[-1]
    if last.role != "user" or last.tool_calls or not last.content.strip():
        return None
    if last.parts is not None and any(p.type != "text" for p in last.parts):
        return None
    return last.content


def numbers(text: str) -> list[str]:
    """The numbers a question names, in no particular order: they must match exactly."""
    return sorted(_NUMBER.findall(text))


def partition_key(job: job_events.ChatJob, model: str) -> str:
    """Everything but the last turn's wording, hashed: requests that may share an answer."""
    normal = job.model_dump(mode="json", exclude=_NOT_KEYED)
    normal["model"] = model
    normal["history"] = [m.model_dump(mode="json") for m in job.messages[:-1]]
    normal["last_role"] = job.messages[-1].role
    normal["numbers"] = numbers(job.messages[-1].content)
    return hashlib.sha256(orjson.dumps(normal, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def lookup(
    raw: Envelope[Any], request: job_events.JobRequested, model: str, ports: Ports
) -> Lookup | None:
    """The job's question embedded and placed; None when it does not use the cache."""
    job = request.job
    text = question(job) if job.semantic_cache else None
    if text is None or ports.semantic is None:
        return None
    embedder = ports.semantic.embedder
    [vector] = await embedder.embed([text])
    await _bill(raw, request, text, embedder.model, ports)
    entry = Entry(raw.tenant_id, partition_key(job, model), embedder.model, vector, job.user_id)
    threshold = job.semantic_threshold or ports.settings.semantic_cache_threshold
    return Lookup(entry, threshold)


async def from_cache(
    request: job_events.JobRequested, place: Lookup, ports: Ports
) -> Answer | None:
    """A cached answer to a question near enough, marked cached and free; None on a miss."""
    assert ports.semantic is not None
    found = await ports.semantic.store.nearest(place.entry, place.threshold)
    metrics = ports.publisher.metrics
    if metrics is not None:
        metrics.cache_lookups.labels("semantic", "hit" if found else "miss").inc()
    if found is None:
        return None
    return Answer(cached_outcome(request, found.answer), similarity=round(found.similarity, 4))


async def store(place: Lookup, answer: Answer, ports: Ports) -> None:
    """Keep a fresh answer for the questions near this one."""
    assert ports.semantic is not None
    r = answer.result
    settings = ports.settings
    await ports.semantic.store.put(
        place.entry,
        cache_entry(answer),
        r.input_tokens + r.output_tokens,
        settings.semantic_cache_ttl_s,
        settings.semantic_cache_max_entries,
    )


async def _bill(
    raw: Envelope[Any], request: job_events.JobRequested, text: str, model: str, ports: Ports
) -> None:
    # Its own id, as a recall's: the job's usage settles the job's reservation.
    usage = embedding_usage(
        derived_id(request.job_id, "semantic-cache"),
        [text],
        purpose="semantic_cache",
        provider=ports.settings.memory_embedder,
        model=model,
        prices=ports.gateway.catalog.prices,
        api_key_id=request.api_key_id,
        user_id=request.job.user_id,
    )
    event = follow_up(raw, job_events.USAGE_RECORDED, usage, "semantic-cache-usage")
    await ports.publisher.publish(topics.USAGE_RECORDED.name, event)
