"""Bearer credentials: API keys (cached briefly, so a busy client costs no query per call)
and, through the tenant's registered issuers, sign-in tokens. Either becomes one `Caller`,
checked against the route's permission (producers.ingress.access).

Whatever is not shaped like a key is refused before the cache and the
database see it, so a header of any size costs nothing to keep. The cache
is keyed by the key's hash, holds a bounded number of entries and forgets
each one when its time is up, or at once when the key changes on any ingress
process (infra.key_events). A key with an address allow-list is refused (403) from
any other address (producers.ingress.client_address).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from cachetools import TTLCache
from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from infra.db.tenants import (
    KEY_PREFIX,
    KeyOwner,
    find_key_owner,
    hash_key,
    is_well_formed_key,
)
from producers.ingress.access import authorize
from producers.ingress.caller import Caller
from producers.ingress.client_address import allowed, client_address
from producers.ingress.errors import ApiError
from producers.ingress.sign_in import SignIn, looks_like_token
from producers.ingress.state import Services, services_dependency

CACHE_TTL_S = 10.0
CACHE_MAX_ENTRIES = 10_000
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class _Missing:
    pass


_MISSING = _Missing()


class KeyCache:
    """Key hash -> its owner, or None for a key that is unknown or revoked.

    It is a `KeyListener` (infra.key_events): it forgets a key that changed anywhere, and
    holds nothing while it could miss such a change (`suspend` until `resume`)."""

    def __init__(
        self,
        max_entries: int = CACHE_MAX_ENTRIES,
        ttl_s: float = CACHE_TTL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: TTLCache[str, KeyOwner | None] = TTLCache(max_entries, ttl_s, timer)
        self._live = True

    def get(self, key_hash: str) -> tuple[bool, KeyOwner | None]:
        if not self._live:
            return False, None
        found = self._entries.get(key_hash, _MISSING)
        if isinstance(found, _Missing):
            return False, None
        return True, found

    def put(self, key_hash: str, owner: KeyOwner | None) -> None:
        if self._live:
            self._entries[key_hash] = owner

    def forget_key(self, key_id: uuid.UUID) -> None:
        """Drop every secret of this key (its current one and a rotated one alike)."""
        for key_hash, owner in list(self._entries.items()):
            if owner is not None and owner.key_id == key_id:
                self._entries.pop(key_hash, None)

    def suspend(self) -> None:
        self._live = False
        self._entries.clear()

    def resume(self) -> None:
        self._entries.clear()
        self._live = True

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)


async def authenticate(request: Request, svc: Services = Depends(services_dependency)) -> Caller:
    return await _authenticate(
        request, svc, lambda: _bearer(request.headers.get("authorization", ""))
    )


async def authenticate_x_api_key(request: Request, svc: Services) -> Caller:
    """As `authenticate`, for the routes of Anthropic's API (whose SDK sends its key in
    `x-api-key`): the credential of `Authorization: Bearer`, else of `x-api-key`."""

    def credential() -> str:
        key = request.headers.get("x-api-key")
        if "authorization" in request.headers or key is None:
            return _bearer(request.headers.get("authorization", ""))
        if not key.strip():
            raise ApiError(401, "unauthorized", "missing API key", _CHALLENGE)
        return key.strip()

    return await _authenticate(request, svc, credential)


async def _authenticate(request: Request, svc: Services, credential: Callable[[], str]) -> Caller:
    known: Caller | None = getattr(request.state, "caller", None)
    if known is not None:  # already authenticated for this request (rate_limited)
        return known
    caller = await _caller(request, svc, credential())
    # Whose browser origins apply to the answer (producers.ingress.cors), a refusal included.
    request.state.tenant_id = caller.tenant_id
    authorize(caller, request.method, request.scope.get("route"))
    request.state.caller = caller
    return caller


async def authenticate_socket(websocket: WebSocket, svc: Services) -> Caller:
    """A WebSocket's caller, before it is accepted: the `Authorization` header as for HTTP,
    else the `token` query parameter (a browser cannot set headers on a WebSocket).
    Raises ApiError (401, 403) as `authenticate` does."""
    header = websocket.headers.get("authorization")
    if header is not None:
        credential = _bearer(header)
    else:
        credential = (websocket.query_params.get("token") or "").strip()
        if not credential:
            raise ApiError(401, "unauthorized", "missing bearer API key", _CHALLENGE)
    caller = await _caller(websocket, svc, credential)
    authorize(caller, "GET", websocket.scope.get("route"))
    return caller


def _bearer(header: str) -> str:
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise ApiError(401, "unauthorized", "missing bearer API key", _CHALLENGE)
    return credential


async def _caller(connection: HTTPConnection, svc: Services, credential: str) -> Caller:
    if not credential.startswith(KEY_PREFIX) and looks_like_token(credential):
        sign_in: SignIn = connection.app.state.sign_in
        return await sign_in.caller(credential)
    return await _key_caller(connection, svc, credential)


# A route's caller, authenticated and checked against the access table.
Authenticated = Annotated[Caller, Depends(authenticate)]


async def _key_caller(request: HTTPConnection, svc: Services, key: str) -> Caller:
    if not is_well_formed_key(key):
        raise ApiError(401, "unauthorized", "unknown or revoked API key", _CHALLENGE)
    cache: KeyCache = request.app.state.key_cache
    key_hash = hash_key(key)
    hit, owner = cache.get(key_hash)
    if not hit:
        owner = await find_key_owner(svc.db, key)
        cache.put(key_hash, owner)
    if owner is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", _CHALLENGE)
    now = datetime.now(UTC)
    if owner.expires_at is not None and owner.expires_at <= now:
        raise ApiError(401, "unauthorized", "this API key has expired", _CHALLENGE)
    if owner.secret_valid_until is not None and owner.secret_valid_until <= now:
        # The previous secret of a rotation, past its grace period (cached before it ended).
        raise ApiError(401, "unauthorized", "unknown or revoked API key", _CHALLENGE)
    if owner.allowed_ips:
        address = client_address(request, request.app.state.trusted_proxies)
        if not allowed(address, owner.allowed_ips):
            raise ApiError(403, "forbidden", "this API key may not be used from this address")
    request.app.state.key_uses.note(owner.key_id)
    return Caller.of_key(owner)
