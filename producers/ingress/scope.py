"""What a signed-in user may name: only themselves. One place for every route.

A caller with the `user` role (`Caller.own_user`) acts for its own user id: a
`user_id` (or OpenAI `user`) in a body or query that names another user is 403,
naming the field; a missing one is filled with the caller's. What belongs to
another user (a job, a memory, a file, a batch) is "not found", as another
tenant's is. API keys are not scoped: they act for any user of their tenant.
"""

from __future__ import annotations

import uuid

from infra.db.budgets import key_in_tenant
from infra.db.engine import Database
from producers.ingress.access import may
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from schemas.jobs import ChatJob, as_user, other_user


def forbidden_user(field: str) -> ApiError:
    return ApiError(
        403,
        "forbidden",
        f"{field} names another user: a signed-in user acts for themselves only",
        field=field,
    )


def scoped_user(caller: Caller, requested: str | None, field: str = "user_id") -> str | None:
    """The user this request acts for: `requested` for a key; the caller's own for a user."""
    own = caller.own_user
    if own is None:
        return requested
    if requested is not None and requested != own:
        raise forbidden_user(field)
    return own


def acting_user(caller: Caller, requested: str | None, field: str = "user_id") -> str:
    """As `scoped_user`, where a user is required: a key must name one (422 otherwise)."""
    user = scoped_user(caller, requested, field)
    if user is None:
        raise ApiError(422, "invalid_request", f"invalid field: {field}: required", field=field)
    return user


def scoped_job(caller: Caller, job: ChatJob, user_field: str = "user_id") -> ChatJob:
    """The job as the caller may run it: a user's names that user (and its memory)."""
    own = caller.own_user
    if own is None:
        return _owned_tools(job)
    field = other_user(job, own)
    if field is not None:
        raise forbidden_user(user_field if field == "user_id" else field)
    return as_user(job, own)


def _owned_tools(job: ChatJob) -> ChatJob:
    """Built-in tools act on a user's things (tasks): a job offering them names its user."""
    if job.ayush_tools and job.user_id is None:
        raise ApiError(
            422,
            "invalid_request",
            "invalid field ayush_tools: built-in tools act for a user; name one in user_id",
            field="ayush_tools",
        )
    return job


def visible(caller: Caller, owner: str | None) -> bool:
    """Whether the caller may see what `owner` made (None: made by an API key)."""
    own = caller.own_user
    return own is None or owner == own


async def require_key(db: Database, caller: Caller, key_id: uuid.UUID, what: str) -> None:
    """A key sees its own `what` (its budget, its limits); another key's needs `keys:read`
    (admin, auditor, or a key given that scope): a permission from the access table, never
    a role checked here. A key of another tenant is not found."""
    if key_id == caller.key_id:
        return
    if not may(caller.role, caller.scopes, "keys:read"):
        raise ApiError(
            403,
            "forbidden",
            f"another key's {what}: reading or changing it needs the keys:read permission "
            "(a key sees its own)",
        )
    if not await key_in_tenant(db, caller.tenant_id, key_id):
        raise ApiError(404, "not_found", f"no API key {key_id}")
