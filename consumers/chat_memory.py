"""Memory around a chat job: recall before the model call, remember after it.

Used by the model-calls group. Recall adds one system message with the
user's nearest memories; remembering publishes a `memory.remember` event whose
ids derive from the job's request, so a re-publish is deduplicated.
"""

from __future__ import annotations

import uuid
from typing import Any

from infra.providers.base import Message
from infra.vectors.recall import MemoryRecall
from schemas import jobs as jobs_ev
from schemas import memory as ev
from schemas import topics
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.versions import follow_up

HEADER = "Relevant memories about the user (most relevant first):"


async def with_memories(
    raw: RawEnvelope, job: jobs_ev.ChatJob, messages: list[Message], recall: MemoryRecall | None
) -> list[Message]:
    if job.memory is None or recall is None:
        return messages
    query = _last_user(job)
    if not query:
        return messages
    found = await recall.recall(raw.tenant_id, job.memory.user_id, query, job.memory.top_k)
    if not found:
        return messages
    context = Message("system", "\n".join([HEADER, *(f"- {text}" for text in found)]))
    leading = 0
    while leading < len(messages) and messages[leading].role == "system":
        leading += 1
    return [*messages[:leading], context, *messages[leading:]]


def remember_exchange(
    raw: RawEnvelope,
    job: jobs_ev.ChatJob,
    answer: str,
    actor: Actor,
    *,
    api_key_id: uuid.UUID | None = None,
) -> list[tuple[str, Envelope[Any]]]:
    """The event storing this exchange as a memory, if the job asked for it (its
    embedding billed to the job's key)."""
    if job.memory is None or not job.memory.remember:
        return []
    command = ev.Remember(
        memory_id=ev.derived_memory_id(raw.id, "memory"),
        user_id=job.memory.user_id,
        text=f"user: {_last_user(job)}\nassistant: {answer}"[:200_000],
        metadata={"source": "chat", "job_id": str(raw.correlation_id)},
        source="chat",
        api_key_id=api_key_id,
    )
    # Correlated by the user, as their other memory commands: kept in order with them.
    user = ev.user_key(raw.tenant_id, job.memory.user_id)
    envelope = follow_up(raw, ev.MEMORY_REMEMBER, command, "remember", actor, correlation_id=user)
    return [(topics.MEMORY_COMMANDS.name, envelope)]


def _last_user(job: jobs_ev.ChatJob) -> str:
    for message in reversed(job.messages):
        if message.role == "user":
            return message.content
    return ""
