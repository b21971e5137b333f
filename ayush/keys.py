"""Tenants' API keys from the command line: create, list, revoke, rotate; and re-sealing.

Revoking and rotating go through the database and are announced on the same channel the
ingress uses (infra.key_events), so every running ingress stops taking the old secret
within a second.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from infra.db import api_keys as key_store
from infra.db.engine import Database
from infra.db.models import ApiKey
from infra.db.sealed import reseal_all
from infra.db.tenants import create_api_key, ensure_tenant, find_tenant_id
from infra.errors import TransientError
from infra.key_events import KeyChanges
from infra.settings import Settings
from infra.vault import Vault
from schemas.keys import NewKey


class KeyCommandError(Exception):
    """Something the user asked for that cannot be done (no such tenant, no such key)."""


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    database_url = settings.require_database()
    db = Database(database_url, pool_size=1)
    try:
        yield db
    finally:
        await db.close()


async def create_key(settings: Settings, tenant: str, spec: NewKey) -> tuple[bool, ApiKey, str]:
    """A key of the tenant (created if new): whether the tenant was new, the key, its secret."""
    async with _database(settings) as db:
        row, created = await ensure_tenant(db, tenant)
        key, plaintext = await create_api_key(
            db, row.id, name=spec.name, role=spec.role, scopes=tuple(spec.scopes),
            expires_at=spec.expires_at, allowed_ips=tuple(spec.allowed_ips),
        )  # fmt: skip
        return created, key, plaintext


async def list_keys(settings: Settings, tenant: str) -> list[ApiKey]:
    async with _database(settings) as db:
        tenant_id = await find_tenant_id(db, tenant)
        if tenant_id is None:
            raise KeyCommandError(f"no tenant named {tenant!r}")
        keys: list[ApiKey] = []
        after: uuid.UUID | None = None
        while True:
            page = await key_store.list_keys(db, tenant_id, after, 500)
            keys.extend(page)
            if len(page) < 500:
                return keys
            after = page[-1].id


async def revoke_key(settings: Settings, key_id: uuid.UUID) -> str | None:
    """Revoke the key; why running ingresses were not told of it, or None when they were."""
    async with _database(settings) as db:
        key = await key_store.revoke_key(db, key_id, None)
    if key is None:
        raise KeyCommandError(f"no API key {key_id}")
    return await _announce(settings, key_id)


async def rotate_key(settings: Settings, key_id: uuid.UUID, grace_s: int) -> tuple[str, str | None]:
    """The key's new secret, and why running ingresses were not told (None when they were)."""
    async with _database(settings) as db:
        rotated = await key_store.rotate_key(db, key_id, None, grace_s)
    if rotated is None:
        raise KeyCommandError(f"no live API key {key_id}")
    return rotated[1], await _announce(settings, key_id)


async def _announce(settings: Settings, key_id: uuid.UUID) -> str | None:
    """Publish the change; the database has it already, so a failure is only reported."""
    changes = KeyChanges(settings)
    try:
        await changes.publish(key_id)
        return None
    except TransientError as exc:
        return str(exc)
    finally:
        await changes.close()


async def reseal(settings: Settings) -> int:
    """Re-seal secrets sealed with older keys; afterwards those keys can be removed."""
    async with _database(settings) as db:
        return await reseal_all(db, Vault.from_setting(settings.encryption_keys))
