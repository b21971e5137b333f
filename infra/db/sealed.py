"""Re-sealing stored secrets with the active key, so an old key can be retired."""

from __future__ import annotations

from sqlalchemy import select, update

from infra.db.actions import connection_context
from infra.db.engine import Database
from infra.db.integration_models import Connection, WebhookEndpoint
from infra.db.issuers import AuthIssuer, issuer_context
from infra.db.webhooks import endpoint_context
from infra.vault import Sealed, Vault


async def reseal_all(db: Database, vault: Vault, batch: int = 500) -> int:
    """Re-seal every connection, endpoint and sign-in issuer secret sealed with one of the
    retired keys.

    Each row is rewritten in its own short transaction, guarded by its old key
    id, so a concurrent writer is never overwritten. Returns the rows changed.
    """
    if vault.active_key_id is None:
        raise ValueError("no encryption key configured")
    retired = vault.retired_key_ids
    changed = 0
    async with db.session() as session:
        connections = (
            (
                await session.execute(
                    select(Connection).where(Connection.key_id.in_(retired)).limit(batch)
                )
            )
            .scalars()
            .all()
        )
        endpoints = (
            (
                await session.execute(
                    select(WebhookEndpoint)
                    .where(WebhookEndpoint.secret_key_id.in_(retired))
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        issuers = (
            (
                await session.execute(
                    select(AuthIssuer).where(AuthIssuer.secret_key_id.in_(retired)).limit(batch)
                )
            )
            .scalars()
            .all()
        )
    for connection in connections:
        context = connection_context(connection)
        plain = vault.open(Sealed(connection.key_id, connection.sealed), context)
        fresh = vault.seal(plain, context)
        async with db.transaction() as session:
            result = await session.execute(
                update(Connection)
                .where(Connection.id == connection.id, Connection.key_id == connection.key_id)
                .values(key_id=fresh.key_id, sealed=fresh.data)
            )
            changed += result.rowcount or 0
    for endpoint in endpoints:
        context = endpoint_context(endpoint.id, endpoint.tenant_id)
        plain = vault.open(Sealed(endpoint.secret_key_id, endpoint.secret_sealed), context)
        fresh = vault.seal(plain, context)
        async with db.transaction() as session:
            result = await session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.id == endpoint.id,
                    WebhookEndpoint.secret_key_id == endpoint.secret_key_id,
                )
                .values(secret_key_id=fresh.key_id, secret_sealed=fresh.data)
            )
            changed += result.rowcount or 0
    for issuer in issuers:
        assert issuer.secret_key_id is not None and issuer.secret_sealed is not None
        context = issuer_context(issuer.id, issuer.tenant_id)
        plain = vault.open(Sealed(issuer.secret_key_id, issuer.secret_sealed), context)
        fresh = vault.seal(plain, context)
        async with db.transaction() as session:
            result = await session.execute(
                update(AuthIssuer)
                .where(
                    AuthIssuer.id == issuer.id,
                    AuthIssuer.secret_key_id == issuer.secret_key_id,
                )
                .values(secret_key_id=fresh.key_id, secret_sealed=fresh.data)
            )
            changed += result.rowcount or 0
    if batch in (len(connections), len(endpoints), len(issuers)):
        changed += await reseal_all(db, vault, batch)
    return changed
