"""Bearer API keys. Lookups are cached briefly so a busy client costs no query per call."""

from __future__ import annotations

import time

from fastapi import Depends, Request

from infra.db.tenants import KeyOwner, find_key_owner
from producers.ingress.errors import ApiError
from producers.ingress.state import Services, services_dependency

CACHE_TTL_S = 10.0
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, KeyOwner | None]] = {}

    def get(self, key: str) -> tuple[bool, KeyOwner | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, owner: KeyOwner | None) -> None:
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + CACHE_TTL_S, owner)


async def authenticate(request: Request, svc: Services = Depends(services_dependency)) -> KeyOwner:
    known: KeyOwner | None = getattr(request.state, "owner", None)
    if known is not None:  # already authenticated for this request (rate_limited)
        return known
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "missing bearer API key", _CHALLENGE)
    cache: KeyCache = request.app.state.key_cache
    hit, owner = cache.get(key.strip())
    if not hit:
        owner = await find_key_owner(svc.db, key.strip())
        cache.put(key.strip(), owner)
    if owner is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", _CHALLENGE)
    request.state.owner = owner
    return owner
