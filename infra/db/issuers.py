"""Sign-in token issuers a tenant trusts. A shared (HS256) secret is stored sealed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, LargeBinary, delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from infra.db.engine import Database
from infra.db.models import Tenant, timestamp_now


class AuthIssuer(SQLModel, table=True):
    __tablename__ = "auth_issuers"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    issuer: str = Field(max_length=500)
    audience: str = Field(max_length=500)
    jwks_url: str | None = Field(default=None, max_length=2000)
    secret_key_id: str | None = Field(default=None, max_length=64)
    secret_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    user_claim: str = Field(default="sub", max_length=100)
    role_claim: str | None = Field(default=None, max_length=100)
    created_at: datetime = timestamp_now()


@dataclass(frozen=True)
class TrustedIssuer:
    """A registered issuer as verification needs it, with its tenant."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    issuer: str
    audience: str
    jwks_url: str | None
    secret_key_id: str | None
    secret_sealed: bytes | None
    user_claim: str
    role_claim: str | None
    settings: dict[str, Any] = field(default_factory=dict)


class IssuerExists(Exception):
    """The tenant already trusts this issuer for this audience."""


def issuer_context(issuer_id: uuid.UUID, tenant_id: uuid.UUID) -> bytes:
    """Associated data of an issuer's sealed secret: it opens on this row only."""
    return b"auth-issuer:" + issuer_id.bytes + tenant_id.bytes


async def add_issuer(db: Database, issuer: AuthIssuer) -> None:
    try:
        await db.add(issuer)
    except IntegrityError as exc:
        raise IssuerExists(issuer.issuer) from exc


async def list_issuers(db: Database, tenant_id: uuid.UUID) -> list[AuthIssuer]:
    async with db.session() as session:
        found = await session.execute(
            select(AuthIssuer)
            .where(AuthIssuer.tenant_id == tenant_id)
            .order_by(AuthIssuer.created_at, AuthIssuer.id)
        )
        return list(found.scalars().all())


async def get_issuer(db: Database, tenant_id: uuid.UUID, issuer_id: uuid.UUID) -> AuthIssuer | None:
    async with db.session() as session:
        issuer = await session.get(AuthIssuer, issuer_id)
    return issuer if issuer is not None and issuer.tenant_id == tenant_id else None


async def delete_issuer(db: Database, tenant_id: uuid.UUID, issuer_id: uuid.UUID) -> bool:
    async with db.transaction() as session:
        result = await session.execute(
            delete(AuthIssuer).where(
                AuthIssuer.id == issuer_id,
                AuthIssuer.tenant_id == tenant_id,
            )
        )
        return bool(result.rowcount)


async def find_trusted(db: Database, issuer: str) -> list[TrustedIssuer]:
    """Every registration of this issuer string, whichever tenant made it."""
    async with db.session() as session:
        rows = (
            await session.execute(
                select(AuthIssuer, Tenant.name, Tenant.settings)
                .join(Tenant, Tenant.id == AuthIssuer.tenant_id)
                .where(AuthIssuer.issuer == issuer)
                .order_by(AuthIssuer.created_at)
            )
        ).all()
    return [
        TrustedIssuer(
            **row.model_dump(exclude={"created_at"}),
            tenant_name=name,
            settings=dict(settings or {}),
        )
        for row, name, settings in rows
    ]
