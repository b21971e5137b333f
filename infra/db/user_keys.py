"""The `user_keys` table: one data key per user of a tenant, sealed by the key ring.

Deleting a row is destroying the key: nothing of it is left at rest, so whatever it
sealed (a forgotten user's events in Kafka, the archive and the event index) stays
ciphertext for good."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, LargeBinary, UniqueConstraint, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Field, SQLModel

from infra.db.engine import Database
from infra.db.models import timestamp_now


class UserKey(SQLModel, table=True):
    __tablename__ = "user_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id", name="uq_user_keys_tenant_user"),)

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    user_id: str = Field(max_length=200)
    sealed_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    vault_key_id: str = Field(max_length=64)
    created_at: datetime = timestamp_now()


def user_key_context(row: UserKey) -> bytes:
    """What a data key is sealed with: it opens on its own row only."""
    return f"user-key|{row.tenant_id}|{row.user_id}|{row.id}".encode()


async def find_user_key(db: Database, tenant_id: uuid.UUID, user_id: str) -> UserKey | None:
    async with db.session() as session:
        found = await session.execute(
            select(UserKey).where(UserKey.tenant_id == tenant_id, UserKey.user_id == user_id)
        )
        return found.scalars().first()


async def get_user_key(db: Database, key_id: uuid.UUID) -> UserKey | None:
    async with db.session() as session:
        return await session.get(UserKey, key_id)


async def insert_user_key(db: Database, row: UserKey) -> bool:
    """Insert the row unless the user has a key already (then False: read that one)."""
    statement = (
        insert(UserKey)
        .values(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            sealed_key=row.sealed_key,
            vault_key_id=row.vault_key_id,
            created_at=row.created_at,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "user_id"])
    )
    async with db.transaction() as session:
        result = await session.execute(statement)
        return bool(result.rowcount)


async def delete_user_key(db: Database, tenant_id: uuid.UUID, user_id: str) -> uuid.UUID | None:
    """Delete the user's key; its id, or None when there was none."""
    async with db.transaction() as session:
        result = await session.execute(
            delete(UserKey)
            .where(UserKey.tenant_id == tenant_id, UserKey.user_id == user_id)
            .returning(UserKey.id)
        )
        return result.scalars().first()
