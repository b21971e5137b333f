"""The tenant's API keys: create, list, read, revoke, rotate.

A secret is shown once, when it is made. A key never grants more than the key that makes
it holds, and a key is rotated only by one that could have made it. Revoking or rotating
tells every ingress process at once (infra.key_events), so the old secret stops working
everywhere within a second.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from infra.db import api_keys as key_store
from infra.db.models import ApiKey
from infra.db.tenants import create_api_key
from infra.errors import TransientError
from infra.key_events import KeyChanges
from producers.ingress.access import exceeds, scope_problem
from producers.ingress.auth import Authenticated, KeyCache
from producers.ingress.body import json_body
from producers.ingress.caller import Caller, Role
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.state import Svc
from schemas.keys import KeyCreated, KeyList, KeyView, NewKey, RotateKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def key_view(key: ApiKey) -> KeyView:
    return KeyView.model_validate(key, from_attributes=True)


def _within_reach(caller: Caller, role: Role, scopes: frozenset[str], verb: str) -> None:
    beyond = exceeds(role, scopes, caller.role, caller.scopes)
    if beyond:
        raise ApiError(
            403,
            "forbidden",
            f"this key may not {verb} a key that can do more than itself: {', '.join(beyond)}",
        )


@router.post("", status_code=201, response_model=KeyCreated)
async def create(
    body: Annotated[NewKey, Depends(json_body(NewKey))], caller: Authenticated, svc: Svc
) -> KeyCreated:
    """A new key of the caller's tenant; its secret is in `key`, shown this once."""
    scopes = frozenset(body.scopes)
    problem = scope_problem(body.role, scopes)
    if problem is not None:
        raise ApiError(422, "invalid_request", problem, field="scopes")
    _within_reach(caller, body.role, scopes, "make")
    key, plaintext = await create_api_key(
        svc.db,
        caller.tenant_id,
        name=body.name,
        role=body.role,
        scopes=tuple(body.scopes),
        expires_at=body.expires_at,
        allowed_ips=tuple(body.allowed_ips),
    )
    return KeyCreated(**key_view(key).model_dump(), key=plaintext)


@router.get("", response_model=KeyList)
async def list_keys(
    caller: Authenticated,
    svc: Svc,
    after: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> KeyList:
    """Every key of the tenant, revoked ones too, newest first; never a secret."""
    rows = await key_store.list_keys(svc.db, caller.tenant_id, after, limit + 1)
    data = [key_view(k) for k in rows[:limit]]
    return KeyList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )


@router.get("/{key_id}", response_model=KeyView)
async def get(key_id: uuid.UUID, caller: Authenticated, svc: Svc) -> KeyView:
    key = await key_store.get_key(svc.db, key_id, caller.tenant_id)
    if key is None:
        raise ApiError(404, "not_found", f"no API key {key_id}")
    return key_view(key)


@router.delete("/{key_id}", status_code=204)
async def revoke(key_id: uuid.UUID, request: Request, caller: Authenticated, svc: Svc) -> Response:
    """Revoke a key; every ingress refuses it within a second. Revoking again is fine."""
    key = await key_store.revoke_key(svc.db, key_id, caller.tenant_id)
    if key is None:
        raise ApiError(404, "not_found", f"no API key {key_id}")
    await _announce(request, key_id)
    return Response(status_code=204)


@router.post("/{key_id}/rotate", status_code=201, response_model=KeyCreated)
async def rotate(
    key_id: uuid.UUID,
    body: Annotated[RotateKey, Depends(json_body(RotateKey, optional=True))],
    request: Request,
    caller: Authenticated,
    svc: Svc,
) -> KeyCreated:
    """A new secret, shown this once; the old one keeps working for `grace_s` seconds."""
    current = await key_store.get_key(svc.db, key_id, caller.tenant_id)
    if current is None or current.revoked_at is not None:
        raise ApiError(404, "not_found", f"no live API key {key_id}")
    # Rotating hands out the key's secret: only to a caller that could have made the key.
    _within_reach(caller, current.role, frozenset(current.scopes), "rotate")  # type: ignore[arg-type]
    rotated = await key_store.rotate_key(svc.db, key_id, caller.tenant_id, body.grace_s)
    if rotated is None:  # revoked in the meantime
        raise ApiError(404, "not_found", f"no live API key {key_id}")
    key, plaintext = rotated
    await _announce(request, key_id)
    return KeyCreated(**key_view(key).model_dump(), key=plaintext)


async def _announce(request: Request, key_id: uuid.UUID) -> None:
    """Forget the key here, then tell every other ingress process."""
    cache: KeyCache = request.app.state.key_cache
    cache.forget_key(key_id)
    changes: KeyChanges = request.app.state.key_changes
    try:
        await changes.publish(key_id)
    except TransientError as exc:
        # The database has the change; other processes' caches end within seconds, and
        # the same call again publishes it again.
        raise unavailable("announcing the key change", exc) from exc
