"""Token issuers' public keys (JWKS documents), fetched through the outbound address policy.

The JWKS URL is the tenant's choice, so every fetch connects only where the connectors may
(`CheckedTransport`): a set at a metadata or private address is never read. Each URL's keys
are cached; a token naming a key id the cache lacks (the issuer rotated) refetches, and so
does a set older than `max_age_s` (a key the issuer removed stops being trusted), but a URL is
fetched at most once per `refetch_s`, whatever tokens arrive. A failed fetch keeps the keys
already held: an issuer's outage does not sign everyone out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import LRUCache

from infra.connectors.address_policy import AddressPolicy, CheckedTransport
from infra.errors import PermanentError, TransientError

MAX_URLS = 1000
MAX_BYTES = 256 * 1024


@dataclass
class _Held:
    keys: list[dict[str, Any]]
    fetched_at: float  # of the keys held
    tried_at: float  # of the last attempt, successful or not


class JwksCache:
    def __init__(
        self,
        policy: AddressPolicy,
        *,
        timeout_s: float = 5.0,
        refetch_s: float = 60.0,
        max_age_s: float = 600.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=CheckedTransport(policy), timeout=timeout_s, follow_redirects=False
        )
        self._refetch_s = refetch_s
        self._max_age_s = max_age_s
        self._timer = timer
        self._held: LRUCache[str, _Held] = LRUCache(MAX_URLS)
        self._locks: LRUCache[str, asyncio.Lock] = LRUCache(MAX_URLS)

    async def keys(self, url: str, kid: str | None) -> list[dict[str, Any]]:
        """The keys published at `url`, refetched when `kid` is not among them (rotation).

        Raises TransientError or PermanentError only when no keys are held for the URL.
        """
        held = self._held.get(url)
        if held is not None and not self._wants_fetch(held, kid):
            return held.keys
        lock = self._locks.get(url)
        if lock is None:
            lock = self._locks[url] = asyncio.Lock()
        async with lock:
            held = self._held.get(url)  # another request may have fetched meanwhile
            if held is not None and not self._wants_fetch(held, kid):
                return held.keys
            now = self._timer()
            try:
                keys = await self._fetch(url)
            except (TransientError, PermanentError):
                if held is None:
                    raise
                held.tried_at = now
                return held.keys
            self._held[url] = _Held(keys, now, now)
            return keys

    def _wants_fetch(self, held: _Held, kid: str | None) -> bool:
        now = self._timer()
        if now - held.tried_at < self._refetch_s:
            return False
        stale = now - held.fetched_at >= self._max_age_s
        unknown = kid is not None and all(key.get("kid") != kid for key in held.keys)
        return stale or unknown

    async def _fetch(self, url: str) -> list[dict[str, Any]]:
        try:
            async with self._client.stream(
                "GET", url, headers={"Accept": "application/json"}
            ) as answer:
                if answer.status_code != 200:
                    raise TransientError(f"JWKS at {url} answered {answer.status_code}")
                body = b""
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise PermanentError(f"JWKS at {url} is larger than {MAX_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise TransientError(f"JWKS at {url} unreachable ({type(exc).__name__})") from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise PermanentError(f"JWKS at {url} is not JSON") from exc
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise PermanentError(f"JWKS at {url} has no keys list")
        return [key for key in keys if isinstance(key, dict)]

    def forget(self, url: str) -> None:
        self._held.pop(url, None)

    async def close(self) -> None:
        await self._client.aclose()
