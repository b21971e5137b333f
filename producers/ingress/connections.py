"""A connection's lifecycle: create, list, read, rename, rotate its credentials, delete.

A connection's credentials are sealed (bound to its row) and never shown: the API says which
fields they have, not their values. Rotating validates the new credentials against the
connector's schema and seals them in place; the next action uses them. Deleting asks the
vendor to revoke the credentials where it offers that (the connector's `revoke`), wipes the
sealed credentials and marks the row deleted: an action on it then fails saying so.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from infra.connectors import CATALOG, build_revoker
from infra.connectors.base import VendorHttp
from infra.db import actions as store
from infra.db.integration_models import Connection
from infra.db.models import utcnow
from infra.db.sealed import opened, seal_into
from infra.errors import AyushError
from producers.ingress.actions import SecretBox, invalid, validated
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError
from producers.ingress.state import Svc
from schemas import integrations as api
from schemas.ids import uuid7

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/connections", tags=["actions"])


def view(row: Connection) -> api.ConnectionView:
    connector = CATALOG.get(row.connector)
    fields = sorted(connector.credentials.model_fields) if connector else []
    return api.ConnectionView(
        id=row.id,
        connector=row.connector,
        name=row.name,
        credential_fields=fields,
        created_at=row.created_at,
        updated_at=row.updated_at,
        rotated_at=row.rotated_at,
        last_used_at=row.last_used_at,
    )


async def _found(svc: Svc, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
    """The tenant's live connection; 404 for another tenant's, an unknown or a deleted one."""
    row = await store.get_connection(svc.db, tenant_id, connection_id)
    if row is None:
        raise ApiError(404, "not_found", "no such connection")
    return row


@router.post("", status_code=201, response_model=api.ConnectionView)
async def create_connection(
    body: Annotated[api.ConnectionCreate, Depends(json_body(api.ConnectionCreate))],
    caller: Authenticated,
    svc: Svc,
    box: SecretBox,
) -> api.ConnectionView:
    connector = CATALOG.get(body.connector)
    if connector is None:
        raise invalid("connector", f"unknown connector; known: {', '.join(CATALOG)}")
    credentials = validated(
        connector.credentials, body.credentials, "credentials", context={"creating": True}
    )
    connection = Connection(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        connector=body.connector,
        name=body.name,
        key_id="",  # sealed next: the credentials are bound to the row's id and tenant
        sealed=b"",
    )
    seal_into(box, connection, credentials.model_dump_json().encode())
    await store.add_connection(svc.db, connection)
    return view(connection)


@router.get("", response_model=api.ConnectionList)
async def list_connections(
    caller: Authenticated,
    svc: Svc,
    connector: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    after: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> api.ConnectionList:
    """The tenant's connections, newest first; `after` is the last id of the previous page."""
    if connector is not None and connector not in CATALOG:
        raise invalid("connector", f"unknown connector; known: {', '.join(CATALOG)}")
    rows = await store.list_connections(
        svc.db, caller.tenant_id, limit=limit + 1, after=after, connector=connector
    )
    data = [view(r) for r in rows[:limit]]
    return api.ConnectionList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )


@router.get("/{connection_id}", response_model=api.ConnectionView)
async def get_connection(
    connection_id: uuid.UUID, caller: Authenticated, svc: Svc
) -> api.ConnectionView:
    return view(await _found(svc, caller.tenant_id, connection_id))


@router.patch("/{connection_id}", response_model=api.ConnectionView)
async def update_connection(
    connection_id: uuid.UUID,
    body: Annotated[api.ConnectionUpdate, Depends(json_body(api.ConnectionUpdate))],
    caller: Authenticated,
    svc: Svc,
    box: SecretBox,
) -> api.ConnectionView:
    """Renames (`name`) and/or rotates (`credentials`: the whole new set, validated against
    the connector's credentials schema, then sealed in place of the old)."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise invalid("name", "give name and/or credentials to change")
    for name in ("name", "credentials"):
        if name in changes and changes[name] is None:
            raise invalid(name, "may not be null")
    row = await _found(svc, caller.tenant_id, connection_id)
    values: dict[str, object] = {}
    if body.name is not None:
        values["name"] = body.name
    if body.credentials is not None:
        credentials = validated(
            CATALOG[row.connector].credentials,
            body.credentials,
            "credentials",
            context={"creating": True},
        )
        seal_into(box, row, credentials.model_dump_json().encode())
        values.update(key_id=row.key_id, sealed=row.sealed, rotated_at=utcnow())
    updated = await store.update_connection(svc.db, caller.tenant_id, connection_id, values)
    if updated is None:  # deleted meanwhile
        raise ApiError(404, "not_found", "no such connection")
    if body.credentials is not None:
        log.info("connection %s (%s): credentials rotated", connection_id, row.connector)
    return view(updated)


@router.delete("/{connection_id}", response_model=api.ConnectionDeleted)
async def delete_connection(
    connection_id: uuid.UUID, caller: Authenticated, svc: Svc, box: SecretBox
) -> api.ConnectionDeleted:
    """Revokes the credentials at the vendor where it offers that, then deletes the
    connection (its sealed credentials wiped). A failed revocation does not keep the
    connection: the answer says it failed, with the vendor's words."""
    row = await _found(svc, caller.tenant_id, connection_id)
    revocation, error = await _revoke(svc, box, row)
    if not await store.mark_deleted(svc.db, caller.tenant_id, connection_id):
        raise ApiError(404, "not_found", "no such connection")
    log.info("connection %s (%s) deleted; revocation %s", connection_id, row.connector, revocation)
    return api.ConnectionDeleted(id=connection_id, revocation=revocation, revocation_error=error)


async def _revoke(svc: Svc, box: SecretBox, row: Connection) -> tuple[api.Revocation, str | None]:
    settings = svc.settings
    http = VendorHttp(settings.connector_timeout_s, max_response_bytes=64 * 1024)
    try:
        connector = build_revoker(settings, row.connector, http)
        if connector is None:
            return "not_offered", None
        try:
            credentials = connector.credentials.model_validate_json(opened(box, row))
            revoked = await connector.revoke(credentials)
        except AyushError as exc:
            return "failed", str(exc)[:500]
        except ValueError:  # the stored credentials no longer fit the connector
            return "failed", "stored credentials no longer fit the connector"
        return ("revoked" if revoked else "not_offered"), None
    finally:
        await http.close()
