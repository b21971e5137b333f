"""Which events carry text a user gave, and whose: those are sealed with that user's data
key wherever they are written (Kafka, the archive, the event index), so destroying the
key forgets them everywhere at once.

A sealed event keeps its envelope in clear (type, tenant, actor, ids, times: routing and
audit need them); only its payload becomes

    {"sealed": {"key": "<data key id>", "data": "<base64 of nonce | ciphertext | tag>"}}

with the envelope's id as associated data, so it opens on its own event only. Events
without a user (a tenant-wide key's job, a conversation of no user) stay in clear: there
is no one whose key could be destroyed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.conversations import CONVERSATION_CREATED, ITEMS_ADDED, RESPONSE_FINISHED
from schemas.jobs import JOB_REQUESTED, JOB_SUCCEEDED
from schemas.memory import MEMORY_REMEMBER, MEMORY_STORED
from schemas.schedules import SCHEDULE_FIRED, TASK_DUE

UserOf = Callable[[Mapping[str, Any]], str | None]

# What a payload that was sealed, and can no longer be opened, is shown as.
REDACTED: dict[str, Any] = {"redacted": True, "reason": "user forgotten"}


def _user(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("user_id")
    return value if isinstance(value, str) and value else None


def _job_user(payload: Mapping[str, Any]) -> str | None:
    job = payload.get("job")
    return _user(job) if isinstance(job, Mapping) else None


# Event type -> how to find the user in its plain payload.
SEALED_TYPES: dict[str, UserOf] = {
    MEMORY_REMEMBER: _user,
    MEMORY_STORED: _user,
    JOB_REQUESTED: _job_user,
    JOB_SUCCEEDED: _user,
    CONVERSATION_CREATED: _user,
    ITEMS_ADDED: _user,
    RESPONSE_FINISHED: _user,
    # A user's schedule (its prompt and params) and a user's task (its title).
    SCHEDULE_FIRED: _user,
    TASK_DUE: _user,
}


def user_of(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """The user whose key seals this event, or None: it stays in clear."""
    find = SEALED_TYPES.get(event_type)
    return find(payload) if find is not None else None


def sealed_part(payload: Any) -> tuple[str, str] | None:
    """(data key id, base64 data) of a sealed payload; None for a payload in clear."""
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    sealed = payload.get("sealed")
    if not isinstance(sealed, dict):
        return None
    key, data = sealed.get("key"), sealed.get("data")
    if not isinstance(key, str) or not isinstance(data, str):
        return None
    return key, data


def is_redacted(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("redacted") is True
