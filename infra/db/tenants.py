"""Tenants and API keys. Only a hash of each key is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.models import ApiKey, Tenant
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


@dataclass(frozen=True)
class KeyOwner:
    key_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    is_admin: bool
    # The tenant's settings, e.g. {"response_cache": true}.
    settings: dict[str, Any] = field(default_factory=dict)


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


async def create_api_key(
    db: Database, tenant_id: uuid.UUID, *, name: str = "", is_admin: bool = False
) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    key = ApiKey(
        id=uuid7(),
        tenant_id=tenant_id,
        name=name,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:12],
        is_admin=is_admin,
    )
    async with db.transaction() as session:
        session.add(key)
    return key, plaintext


async def find_key_owner(db: Database, plaintext: str) -> KeyOwner | None:
    async with db.session() as session:
        row = (
            await session.execute(
                select(ApiKey.id, ApiKey.tenant_id, Tenant.name, ApiKey.is_admin, Tenant.settings)
                .join(Tenant, Tenant.id == ApiKey.tenant_id)
                .where(ApiKey.key_hash == hash_key(plaintext), ApiKey.revoked_at.is_(None))
            )
        ).first()
    if row is None:
        return None
    return KeyOwner(
        key_id=row[0],
        tenant_id=row[1],
        tenant_name=row[2],
        is_admin=row[3],
        settings=dict(row[4] or {}),
    )
