"""Secrets sealed in rows (connections' credentials, webhook endpoints', outbound webhook
subscriptions' and sign-in issuers' secrets, users' data keys): sealing one into its row,
opening it, and re-sealing them all with the active key so an old key can be retired. Each is
bound to its row: it opens there only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from infra.db.actions import connection_context
from infra.db.engine import Database
from infra.db.integration_models import Connection, WebhookEndpoint
from infra.db.issuers import AuthIssuer, issuer_context
from infra.db.outbound_webhooks import WebhookSubscription, subscription_context
from infra.db.user_keys import UserKey, user_key_context
from infra.db.webhooks import endpoint_context
from infra.vault import Sealed, Vault


@dataclass(frozen=True)
class _SealedColumns:
    """A table that stores a sealed secret: its key id and data columns, and the
    associated data the secret was sealed with (it opens on its own row only)."""

    model: Any
    key_id: str
    data: str
    context: Callable[[Any], bytes]


TABLES = (
    _SealedColumns(Connection, "key_id", "sealed", connection_context),
    _SealedColumns(
        WebhookEndpoint,
        "secret_key_id",
        "secret_sealed",
        lambda row: endpoint_context(row.id, row.tenant_id),
    ),
    _SealedColumns(
        AuthIssuer,
        "secret_key_id",
        "secret_sealed",
        lambda row: issuer_context(row.id, row.tenant_id),
    ),
    _SealedColumns(UserKey, "vault_key_id", "sealed_key", user_key_context),
    _SealedColumns(WebhookSubscription, "secret_key_id", "secret_sealed", subscription_context),
)


def _table_of(row: Any) -> _SealedColumns:
    for table in TABLES:
        if isinstance(row, table.model):
            return table
    raise TypeError(f"{type(row).__name__} holds no sealed secret")


def seal_into(vault: Vault, row: Any, plaintext: bytes) -> None:
    """Seal `plaintext` with the active key into the row's secret columns (the row's id and
    tenant must be set: the secret is bound to them)."""
    table = _table_of(row)
    sealed = vault.seal(plaintext, table.context(row))
    setattr(row, table.key_id, sealed.key_id)
    setattr(row, table.data, sealed.data)


def opened(vault: Vault, row: Any) -> bytes:
    """The row's secret, opened."""
    table = _table_of(row)
    sealed = Sealed(getattr(row, table.key_id), getattr(row, table.data))
    return vault.open(sealed, table.context(row))


async def reseal_all(db: Database, vault: Vault, batch: int = 500) -> int:
    """Re-seal every connection, endpoint, sign-in issuer secret and user data key sealed
    with one of the retired keys.

    Each row is rewritten in its own short transaction, guarded by its old key
    id, so a concurrent writer is never overwritten. Returns the rows changed.
    """
    if vault.active_key_id is None:
        raise ValueError("no encryption key configured")
    changed = 0
    for table in TABLES:
        changed += await _reseal_table(db, vault, table, batch)
    return changed


async def _reseal_table(db: Database, vault: Vault, table: _SealedColumns, batch: int) -> int:
    model, key_id = table.model, getattr(table.model, table.key_id)
    changed = 0
    while True:
        async with db.session() as session:
            found = await session.execute(
                select(model).where(key_id.in_(vault.retired_key_ids)).limit(batch)
            )
            rows = found.scalars().all()
        for row in rows:
            old_key_id = getattr(row, table.key_id)
            context = table.context(row)
            plain = vault.open(Sealed(old_key_id, getattr(row, table.data)), context)
            fresh = vault.seal(plain, context)
            async with db.transaction() as session:
                result = await session.execute(
                    update(model)
                    .where(model.id == row.id, key_id == old_key_id)
                    .values({table.key_id: fresh.key_id, table.data: fresh.data})
                )
                changed += result.rowcount or 0
        if len(rows) < batch:
            return changed
