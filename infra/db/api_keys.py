"""Managing API keys once they exist: listing, revoking, rotating, noting their last use.

Creating one and resolving a secret to its owner are in `infra.db.tenants`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from infra.db.engine import Database
from infra.db.models import ApiKey, Tenant
from infra.db.tenants import hash_key, new_secret


async def list_keys(
    db: Database, tenant_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[ApiKey]:
    """Newest first (ids are time-ordered); `after` is the last id of the previous page."""
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    if after is not None:
        query = query.where(ApiKey.id < after)
    async with db.session() as session:
        found = await session.execute(query.order_by(ApiKey.id.desc()).limit(limit))
        return list(found.scalars())


async def get_key(db: Database, key_id: uuid.UUID, tenant_id: uuid.UUID | None) -> ApiKey | None:
    """The key with this id (of this tenant, when one is named)."""
    query = select(ApiKey).where(ApiKey.id == key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    async with db.session() as session:
        return (await session.execute(query)).scalar_one_or_none()


async def revoke_key(db: Database, key_id: uuid.UUID, tenant_id: uuid.UUID | None) -> ApiKey | None:
    """Revoke the key (again is fine: the first revocation's time stays); None if unknown."""
    query = update(ApiKey).where(ApiKey.id == key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    query = query.values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
    async with db.transaction() as session:
        found = await session.execute(query.returning(ApiKey))
        return found.scalar_one_or_none()


async def rotate_key(
    db: Database, key_id: uuid.UUID, tenant_id: uuid.UUID | None, grace_s: int
) -> tuple[ApiKey, str] | None:
    """A new secret for a live key; the current one keeps working for `grace_s` seconds
    (0: not at all). A secret of an earlier rotation still in its grace period ends now.
    None when there is no such live key."""
    plaintext = new_secret()
    query = update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    query = query.values(
        key_hash=hash_key(plaintext),
        prefix=plaintext[:12],
        previous_key_hash=ApiKey.key_hash if grace_s > 0 else None,
        previous_valid_until=func.now() + timedelta(seconds=grace_s) if grace_s > 0 else None,
    )
    async with db.transaction() as session:
        found = (await session.execute(query.returning(ApiKey))).scalar_one_or_none()
    return (found, plaintext) if found is not None else None


async def touch_keys(db: Database, used: dict[uuid.UUID, datetime]) -> None:
    """Note when keys were last used (never moving a time backwards)."""
    async with db.transaction() as session:
        for key_id, at in used.items():
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(last_used_at=func.greatest(func.coalesce(ApiKey.last_used_at, at), at))
            )


async def tenant_name_of(db: Database, tenant_id: uuid.UUID) -> str | None:
    async with db.session() as session:
        found = await session.execute(select(Tenant.name).where(Tenant.id == tenant_id))
        return found.scalar_one_or_none()
