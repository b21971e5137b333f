"""Who is calling: one `Caller` per request, whatever proved it (an API key or a sign-in token).

Every route reads the caller, never the credential: its tenant, its role, its scopes and,
for a person signed in with a token, their user id. A person with the plain `user` role
acts as themselves only (`own_user`); a token whose role claim names a staff role
(admin, developer, auditor) acts with that role and is still attributed to the person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.db.tenants import KeyOwner
from schemas.envelope import Actor
from schemas.ids import user_subject

__all__ = ["ROLES", "Caller", "Role", "user_subject"]

Role = Literal["admin", "developer", "service", "auditor", "user"]
ROLES: tuple[Role, ...] = ("admin", "developer", "service", "auditor", "user")


@dataclass(frozen=True)
class Caller:
    tenant_id: uuid.UUID
    tenant_name: str
    role: Role
    key_id: uuid.UUID | None = None
    user_id: str | None = None
    scopes: frozenset[str] = frozenset()
    # The tenant's settings, e.g. {"response_cache": true}.
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_key(cls, owner: KeyOwner) -> Caller:
        return cls(
            tenant_id=owner.tenant_id,
            tenant_name=owner.tenant_name,
            role=owner.role,
            key_id=owner.key_id,
            scopes=owner.scopes,
            settings=owner.settings,
        )

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_tenant(self) -> bool:
        """Whether reads cover the whole tenant, not only this caller's own key."""
        return self.role in ("admin", "auditor")

    @property
    def own_user(self) -> str | None:
        """The only user this caller may act for, or None when it may act for any."""
        return self.user_id if self.role == "user" else None

    @property
    def subject_id(self) -> uuid.UUID:
        """Whose counters this request uses: the key's, or the signed-in user's."""
        if self.key_id is not None:
            return self.key_id
        assert self.user_id is not None, "a caller is a key or a user"
        return user_subject(self.tenant_id, self.user_id)

    @property
    def actor(self) -> Actor:
        """Who the events this caller causes name."""
        if self.key_id is not None:
            return Actor(kind="api_key", id=str(self.key_id))
        return Actor(kind="user", id=str(self.user_id))
