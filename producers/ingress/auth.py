"""Bearer credentials: API keys (cached briefly, so a busy client costs no query per call)
and, through the tenant's registered issuers, sign-in tokens. Either becomes one `Caller`,
checked against the route's permission (producers.ingress.access).

Whatever is not shaped like a key is refused before the cache and the
database see it, so a header of any size costs nothing to keep. The cache
is keyed by the key's hash, holds a bounded number of entries and forgets
each one when its time is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from cachetools import TTLCache
from fastapi import Depends, Request

from infra.db.tenants import (
    KEY_PREFIX,
    KeyOwner,
    find_key_owner,
    hash_key,
    is_well_formed_key,
)
from producers.ingress.access import authorize
from producers.ingress.caller import Caller
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
    """Key hash -> its owner, or None for a key that is unknown or revoked."""

    def __init__(
        self,
        max_entries: int = CACHE_MAX_ENTRIES,
        ttl_s: float = CACHE_TTL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: TTLCache[str, KeyOwner | None] = TTLCache(max_entries, ttl_s, timer)

    def get(self, key_hash: str) -> tuple[bool, KeyOwner | None]:
        found = self._entries.get(key_hash, _MISSING)
        if isinstance(found, _Missing):
            return False, None
        return True, found

    def put(self, key_hash: str, owner: KeyOwner | None) -> None:
        self._entries[key_hash] = owner

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)


async def authenticate(request: Request, svc: Services = Depends(services_dependency)) -> Caller:
    known: Caller | None = getattr(request.state, "caller", None)
    if known is not None:  # already authenticated for this request (rate_limited)
        return known
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise ApiError(401, "unauthorized", "missing bearer API key", _CHALLENGE)
    if not credential.startswith(KEY_PREFIX) and looks_like_token(credential):
        sign_in: SignIn = request.app.state.sign_in
        caller = await sign_in.caller(credential)
    else:
        caller = await _key_caller(request, svc, credential)
    authorize(caller, request.method, request.scope.get("route"))
    request.state.caller = caller
    return caller


async def _key_caller(request: Request, svc: Services, key: str) -> Caller:
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
    if owner.expires_at is not None and owner.expires_at <= datetime.now(UTC):
        raise ApiError(401, "unauthorized", "this API key has expired", _CHALLENGE)
    return Caller.of_key(owner)
