"""Tenants and API keys. Only a hash of each key is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import InterfaceError, OperationalError

from infra.db.engine import Database
from infra.db.models import ApiKey, Tenant
from infra.errors import TransientError
from schemas.ids import uuid7

KEY_PREFIX = "ayk_"
KEY_BYTES = 32
# What create_api_key hands out: the prefix and 32 random bytes, URL-safe base64 unpadded.
KEY_FORMAT = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{{(KEY_BYTES * 4 + 2) // 3}}}")


def hash_key(plaintext: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is enough: there is no
    # dictionary to guess from, unlike passwords.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def is_well_formed_key(candidate: str) -> bool:
    """Whether `candidate` could be a key at all; anything else needs no lookup."""
    return KEY_FORMAT.fullmatch(candidate) is not None


# What an unreachable or restarting database raises through SQLAlchemy.
_UNREACHABLE = (
    OSError,
    OperationalError,
    InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
)

KeyRole = Literal["admin", "developer", "service", "auditor"]
KEY_ROLES: tuple[KeyRole, ...] = ("admin", "developer", "service", "auditor")


@dataclass(frozen=True)
class KeyOwner:
    """A live key as the ingress needs it: whose it is, what it may do, where from, until when."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    role: KeyRole
    scopes: frozenset[str] = frozenset()
    # The tenant's settings, e.g. {"response_cache": true}.
    settings: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    allowed_ips: tuple[str, ...] = ()
    # Set when the secret presented is the previous one of a rotation: when it stops working.
    secret_valid_until: datetime | None = None


async def ensure_tenant(db: Database, name: str) -> tuple[Tenant, bool]:
    """The tenant of that name, created if new; the flag says whether it was."""
    async with db.transaction() as session:
        created = await session.execute(
            insert(Tenant)
            .values(id=uuid7(), name=name, settings={})
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(Tenant.id)
        )
        was_created = created.first() is not None
        tenant = (await session.execute(select(Tenant).where(Tenant.name == name))).scalar_one()
    return tenant, was_created


async def find_tenant_id(db: Database, name_or_id: str) -> uuid.UUID | None:
    """The id of the tenant with this name, or with this id; None if there is none."""
    try:
        as_id: uuid.UUID | None = uuid.UUID(name_or_id)
    except ValueError:
        as_id = None
    async with db.session() as session:
        if as_id is not None:
            found = await session.execute(select(Tenant.id).where(Tenant.id == as_id))
            tenant_id = found.scalar_one_or_none()
            if tenant_id is not None:
                return tenant_id
        found = await session.execute(select(Tenant.id).where(Tenant.name == name_or_id))
        return found.scalar_one_or_none()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


async def create_api_key(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    name: str = "",
    role: KeyRole = "developer",
    scopes: tuple[str, ...] = (),
    expires_at: datetime | None = None,
    allowed_ips: tuple[str, ...] = (),
) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    plaintext = new_secret()
    key = ApiKey(
        id=uuid7(),
        tenant_id=tenant_id,
        name=name,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:12],
        role=role,
        scopes=list(scopes),
        expires_at=expires_at,
        allowed_ips=list(allowed_ips),
    )
    async with db.transaction() as session:
        session.add(key)
    return key, plaintext


async def find_key_owner(db: Database, plaintext: str) -> KeyOwner | None:
    """The owner of a key that is not revoked: its current secret, or the previous one
    within its grace period after a rotation. An expired key is returned with its
    `expires_at`, so the caller can say why it is refused."""
    key_hash = hash_key(plaintext)
    async with db.session() as session:
        row = (
            await session.execute(
                select(ApiKey, Tenant.name, Tenant.settings)
                .join(Tenant, Tenant.id == ApiKey.tenant_id)
                .where(
                    or_(
                        ApiKey.key_hash == key_hash,
                        and_(
                            ApiKey.previous_key_hash == key_hash,
                            ApiKey.previous_valid_until > func.now(),
                        ),
                    ),
                    ApiKey.revoked_at.is_(None),
                )
            )
        ).first()
    if row is None:
        return None
    key, tenant_name, settings = row
    return KeyOwner(
        key_id=key.id,
        tenant_id=key.tenant_id,
        tenant_name=tenant_name,
        role=key.role,
        scopes=frozenset(key.scopes or ()),
        settings=dict(settings or {}),
        expires_at=key.expires_at,
        allowed_ips=tuple(key.allowed_ips or ()),
        secret_valid_until=key.previous_valid_until if key.key_hash != key_hash else None,
    )


async def tenant_settings(db: Database, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with db.session() as session:
        found = await session.execute(select(Tenant.settings).where(Tenant.id == tenant_id))
        return dict(found.scalar_one_or_none() or {})


async def update_tenant_settings(
    db: Database, tenant_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Merges `changes` into the tenant's settings in one statement; the settings after."""
    async with db.transaction() as session:
        merged = await session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(settings=Tenant.settings.op("||")(literal(changes, JSONB)))
            .returning(Tenant.settings)
        )
        return dict(merged.scalar_one())


async def cors_origins_by_tenant(db: Database) -> dict[uuid.UUID, frozenset[str]]:
    """Every tenant that allows browser origins, with them (TransientError when unreachable)."""
    try:
        async with db.session() as session:
            rows = await session.execute(
                select(Tenant.id, Tenant.settings["cors_origins"]).where(
                    Tenant.settings.has_key("cors_origins")
                )
            )
            found = rows.all()
    except _UNREACHABLE as exc:
        raise TransientError(f"tenants' origins unreadable: {type(exc).__name__}") from exc
    return {
        tenant_id: frozenset(str(o) for o in origins)
        for tenant_id, origins in found
        if isinstance(origins, list) and origins
    }
