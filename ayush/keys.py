"""Creating tenants and API keys from the command line."""

from __future__ import annotations

import uuid

from infra.db.engine import Database
from infra.db.sealed import reseal_all
from infra.db.tenants import create_api_key, ensure_tenant
from infra.settings import Settings
from infra.vault import Vault


async def create_key(
    settings: Settings, tenant: str, admin: bool, name: str = ""
) -> tuple[bool, uuid.UUID, str]:
    database_url = settings.require_database()
    db = Database(database_url, pool_size=1)
    try:
        row, created = await ensure_tenant(db, tenant)
        key, plaintext = await create_api_key(
            db, row.id, name=name, role="admin" if admin else "developer"
        )
        return created, key.id, plaintext
    finally:
        await db.close()


async def reseal(settings: Settings) -> int:
    """Re-seal secrets sealed with older keys; afterwards those keys can be removed."""
    database_url = settings.require_database()
    db = Database(database_url, pool_size=1)
    try:
        return await reseal_all(db, Vault.from_setting(settings.encryption_keys))
    finally:
        await db.close()
