"""Per-key rate limits that differ from the settings' defaults, and per-user limits.

A tenant's end users are held to their own limits, else to the tenant's default
for its users (stored under the user id "", which no user has), else to none.
Postgres keeps them; Redis holds a copy the limiter reads on every request
(infra.rate_windows). A NULL limit means the default applies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text

from infra.db.engine import Database


@dataclass(frozen=True)
class KeyLimits:
    api_key_id: uuid.UUID
    requests_per_min: int | None
    tokens_per_min: int | None


async def set_key_limits(db: Database, tenant_id: uuid.UUID, limits: KeyLimits) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO rate_limit_overrides "
                "(api_key_id, tenant_id, requests_per_min, tokens_per_min, updated_at) "
                "VALUES (:key, :tenant, :rpm, :tpm, now()) "
                "ON CONFLICT (api_key_id) DO UPDATE SET "
                "requests_per_min = excluded.requests_per_min, "
                "tokens_per_min = excluded.tokens_per_min, updated_at = now()"
            ),
            {
                "key": limits.api_key_id,
                "tenant": tenant_id,
                "rpm": limits.requests_per_min,
                "tpm": limits.tokens_per_min,
            },
        )


async def clear_key_limits(db: Database, key_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        await session.execute(
            text("DELETE FROM rate_limit_overrides WHERE api_key_id = :key"), {"key": key_id}
        )


async def key_limits(db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID) -> KeyLimits:
    """The key's own limits; both None when it has none (or it is not the tenant's)."""
    async with db.tenant_reads(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT requests_per_min, tokens_per_min FROM rate_limit_overrides "
                    "WHERE api_key_id = :key AND tenant_id = :tenant"
                ),
                {"key": key_id, "tenant": tenant_id},
            )
        ).first()
    return KeyLimits(key_id, row[0], row[1]) if row else KeyLimits(key_id, None, None)


async def all_key_limits(db: Database) -> list[KeyLimits]:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT api_key_id, requests_per_min, tokens_per_min FROM rate_limit_overrides")
        )
        return [KeyLimits(*row) for row in rows]


DEFAULT_USER = ""  # the row of the tenant's default for its users


@dataclass(frozen=True)
class UserLimits:
    tenant_id: uuid.UUID
    user_id: str  # DEFAULT_USER: the tenant's default
    requests_per_min: int | None
    tokens_per_min: int | None


async def set_user_limits(db: Database, limits: UserLimits) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO user_rate_limits "
                "(tenant_id, user_id, requests_per_min, tokens_per_min, updated_at) "
                "VALUES (:tenant, :user, :rpm, :tpm, now()) "
                "ON CONFLICT (tenant_id, user_id) DO UPDATE SET "
                "requests_per_min = excluded.requests_per_min, "
                "tokens_per_min = excluded.tokens_per_min, updated_at = now()"
            ),
            {
                "tenant": limits.tenant_id,
                "user": limits.user_id,
                "rpm": limits.requests_per_min,
                "tpm": limits.tokens_per_min,
            },
        )


async def clear_user_limits(db: Database, tenant_id: uuid.UUID, user_id: str) -> None:
    async with db.transaction() as session:
        await session.execute(
            text("DELETE FROM user_rate_limits WHERE tenant_id = :tenant AND user_id = :user"),
            {"tenant": tenant_id, "user": user_id},
        )


async def user_limits(db: Database, tenant_id: uuid.UUID, user_id: str) -> UserLimits:
    """The user's own limits (DEFAULT_USER: the default's); both None when not set."""
    async with db.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT requests_per_min, tokens_per_min FROM user_rate_limits "
                    "WHERE tenant_id = :tenant AND user_id = :user"
                ),
                {"tenant": tenant_id, "user": user_id},
            )
        ).first()
    return UserLimits(tenant_id, user_id, *(row if row else (None, None)))


async def all_user_limits(db: Database) -> list[UserLimits]:
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT tenant_id, user_id, requests_per_min, tokens_per_min FROM user_rate_limits"
            )
        )
        return [UserLimits(*row) for row in rows]
