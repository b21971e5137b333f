"""Who is calling: one `Caller` per request, whatever proved it (an API key or a sign-in token).

Every route reads the caller, never the credential: its tenant, its role, its scopes and,
for a person signed in with a token, their user id. A person with the plain `user` role
acts as themselves only (`own_user`); a token whose role claim names a staff role
(admin, developer, auditor) acts with that role and is still attributed to the person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from infra.db.tenants import KeyOwner
from schemas.envelope import Actor, Envelope
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
        """A key acts for its whole tenant, as no user: every other field is the key owner's."""
        return cls(**{f.name: getattr(owner, f.name) for f in fields(cls) if f.name != "user_id"})

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

    def event(
        self, type_: str, correlation_id: uuid.UUID, payload: Any, **fields: Any
    ) -> Envelope[Any]:
        """An event this caller causes: its tenant and actor, about `correlation_id`."""
        return Envelope[Any](
            type=type_,
            tenant_id=self.tenant_id,
            actor=self.actor,
            correlation_id=correlation_id,
            payload=payload,
            **fields,
        )
