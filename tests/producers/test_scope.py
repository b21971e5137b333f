"""A signed-in user acts for themselves only; an API key for any user of its tenant."""

from __future__ import annotations

import uuid

import pytest

from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.scope import acting_user, scoped_job, scoped_user, visible
from schemas.jobs import ChatJob, ChatMessage
from schemas.memory import MemoryContext

TENANT = uuid.uuid4()
ALICE = Caller(tenant_id=TENANT, tenant_name="t", role="user", user_id="alice")
KEY = Caller(tenant_id=TENANT, tenant_name="t", role="developer", key_id=uuid.uuid4())
# A token whose role claim names a staff role acts with that role, for any user.
STAFF = Caller(tenant_id=TENANT, tenant_name="t", role="admin", user_id="carol")


def job(**fields: object) -> ChatJob:
    return ChatJob.model_validate(
        {"model": "local-echo", "messages": [ChatMessage(role="user", content="hi")], **fields}
    )


def test_a_user_naming_another_user_is_forbidden_naming_the_field() -> None:
    with pytest.raises(ApiError) as refused:
        scoped_user(ALICE, "bob")
    assert (refused.value.status, refused.value.error, refused.value.field) == (
        403,
        "forbidden",
        "user_id",
    )
    with pytest.raises(ApiError) as refused:
        scoped_user(ALICE, "bob", "user")
    assert refused.value.field == "user"


def test_a_users_missing_user_id_is_their_own() -> None:
    assert scoped_user(ALICE, None) == "alice"
    assert scoped_user(ALICE, "alice") == "alice"
    assert acting_user(ALICE, None) == "alice"


def test_a_key_acts_for_any_user_but_must_name_one_where_one_is_needed() -> None:
    assert scoped_user(KEY, "bob") == "bob"
    assert scoped_user(KEY, None) is None
    assert scoped_user(STAFF, "bob") == "bob"
    with pytest.raises(ApiError) as refused:
        acting_user(KEY, None)
    assert (refused.value.status, refused.value.field) == (422, "user_id")


def test_a_users_job_and_its_memory_are_theirs() -> None:
    scoped = scoped_job(ALICE, job(memory=MemoryContext(user_id="alice")))
    assert scoped.user_id == "alice" and scoped.memory is not None
    assert scoped.memory.user_id == "alice"
    with pytest.raises(ApiError) as refused:
        scoped_job(ALICE, job(memory=MemoryContext(user_id="bob")))
    assert (refused.value.status, refused.value.field) == (403, "memory.user_id")
    with pytest.raises(ApiError) as refused:
        scoped_job(ALICE, job(user_id="bob"), "user")
    assert refused.value.field == "user"
    other = job(user_id="bob", memory=MemoryContext(user_id="bob"))
    assert scoped_job(KEY, other) == other


def test_what_another_user_made_is_not_visible_to_a_user() -> None:
    assert visible(ALICE, "alice")
    assert not visible(ALICE, "bob")
    assert not visible(ALICE, None)  # made by an API key for the tenant
    assert visible(KEY, "bob") and visible(KEY, None)
