"""DELETE /v1/users/{user_id}: forget a user of the tenant everywhere (admin keys).

The user's data key is destroyed, so every copy of the text they gave (memories, the
prompts and answers of their jobs, their conversations) in Kafka, the archive and the
event index is unreadable from then on; their memories are forgotten (memory.forget_user)
and the Postgres projections that hold their text are erased (infra.db.user_data).
Idempotent: forgetting a forgotten (or unknown) user answers the same.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from infra.db.user_data import erase_user
from producers.ingress.auth import Authenticated
from producers.ingress.memories import forget_memories_of
from producers.ingress.state import Svc

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Annotated[str, Path(min_length=1, max_length=200)]


class UserForgotten(BaseModel):
    user_id: str
    forgotten: bool = True
    # False when the user had no data key (nothing of theirs was sealed) or no key ring
    # is configured.
    key_destroyed: bool
    # Rows of the projections erased or deleted, per table.
    erased: dict[str, int]


@router.delete("/{user_id}", status_code=202, response_model=UserForgotten)
async def forget_user(user_id: UserId, caller: Authenticated, svc: Svc) -> UserForgotten:
    before, destroyed = await forget_memories_of(svc, caller, user_id)
    erased = await erase_user(svc.db, caller.tenant_id, user_id, before)
    return UserForgotten(user_id=user_id, key_destroyed=destroyed, erased=erased)
