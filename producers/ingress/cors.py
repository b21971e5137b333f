"""Browsers (CORS): which web origins may read the API's answers, globally and per tenant.

Starlette's CORSMiddleware decides from one fixed list before the app runs. Here an
answer's headers are decided when it starts, after authentication has named the caller's
tenant, so a tenant's origins open that tenant's answers only:

- A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) carries no
  credentials and cannot name a tenant: it is answered for an origin allowed globally
  (`AYUSH_CORS_ORIGINS`) or by any tenant, with the methods, the headers asked for and
  `Access-Control-Max-Age`; any other origin gets a 403 without `Access-Control-Allow-Origin`.
- Any other request's answer echoes its `Origin` when that origin is allowed globally or
  by the caller's tenant (a refusal before the tenant is known, such as a 401, only for the
  global ones), with credentials allowed and the rate-limit and id headers exposed.
- `*` (any origin, globally or by a tenant) answers a literal `*`, never with credentials.

The tenants' origins are read from Postgres into this process and read again once the copy
is older than `AYUSH_CORS_REFRESH_S`, when a request with an `Origin` needs them; the
process that serves a tenant's change applies it at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.errors import TransientError
from producers.ingress.middleware import HttpMiddleware
from schemas.tenant_settings import ANY_ORIGIN

log = logging.getLogger(__name__)

# "origin": the request's own origin is listed; "any": only `*` lets it in.
Grant = Literal["origin", "any"] | None
TenantOrigins = dict[uuid.UUID, frozenset[str]]

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
# What a page may read of an answer beyond the safelisted headers.
EXPOSE_HEADERS = ", ".join(
    (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-RateLimit-Limit-Tokens",
        "X-RateLimit-Remaining-Tokens",
        "Retry-After",
        "X-Request-Id",
        "X-Ayush-Job-Id",
        "X-Ayush-Cache",
        "X-Ayush-Cache-Similarity",
        "X-Ayush-Cost-Usd",
    )
)
# Access-Control-Request-Headers: a comma-separated list of header names (RFC 9110 tokens).
_HEADER_NAMES = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")
MAX_REQUEST_HEADERS_CHARS = 2000


class AllowedOrigins:
    """The global origins and each tenant's, the latter refreshed from `load` when stale."""

    def __init__(
        self,
        configured: Iterable[str],
        refresh_s: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._global = frozenset(configured)
        self._refresh_s = refresh_s
        self._timer = timer
        self._load: Callable[[], Awaitable[TenantOrigins]] | None = None
        self._tenants: TenantOrigins = {}
        self._anyone = self._global  # allowed globally or by any tenant
        self._loaded_at = -math.inf
        self._generation = 0  # counts local changes, so a slower load cannot undo one
        self._lock = asyncio.Lock()

    def attach(self, load: Callable[[], Awaitable[TenantOrigins]] | None) -> None:
        """Where the tenants' origins come from (None: the global ones only)."""
        self._load = load
        self._loaded_at = -math.inf

    def changed(self, tenant_id: uuid.UUID, origins: Iterable[str]) -> None:
        """A tenant's origins as just written by this process."""
        self._generation += 1
        self._set({**self._tenants, tenant_id: frozenset(origins)})

    async def for_preflight(self, origin: str) -> Grant:
        await self._refresh_if_stale()
        return _grant(origin, self._anyone)

    async def for_request(self, origin: str, tenant_id: uuid.UUID | None) -> Grant:
        if tenant_id is None:
            return _grant(origin, self._global)
        await self._refresh_if_stale()
        return _grant(origin, self._global | self._tenants.get(tenant_id, frozenset()))

    def _set(self, tenants: TenantOrigins) -> None:
        self._tenants = {t: origins for t, origins in tenants.items() if origins}
        self._anyone = self._global.union(*self._tenants.values())

    async def _refresh_if_stale(self) -> None:
        if self._load is None or self._timer() - self._loaded_at < self._refresh_s:
            return
        async with self._lock:
            if self._timer() - self._loaded_at < self._refresh_s:
                return  # another request refreshed it meanwhile
            generation = self._generation
            try:
                tenants = await self._load()
            except TransientError as exc:
                # Keep the origins known so far; try again after the refresh interval.
                log.warning("browser origins not refreshed: %s", exc)
                self._loaded_at = self._timer()
                return
            if generation == self._generation:
                self._set(tenants)
                self._loaded_at = self._timer()
            # else: a change landed while loading; the next request loads again.


def _grant(origin: str, allowed: frozenset[str]) -> Grant:
    if origin in allowed:
        return "origin"
    if ANY_ORIGIN in allowed:
        return "any"
    return None


def _allow(headers: MutableHeaders, origin: str, grant: Grant) -> None:
    if grant == "origin":
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    elif grant == "any":
        headers["Access-Control-Allow-Origin"] = ANY_ORIGIN


def _tenant_of(state: dict[str, object]) -> uuid.UUID | None:
    """The tenant authentication named for this request, if it got that far."""
    tenant_id = state.get("tenant_id")
    return tenant_id if isinstance(tenant_id, uuid.UUID) else None


class CorsMiddleware(HttpMiddleware):
    """Pure ASGI, so streamed answers (event streams) pass through and get the headers too."""

    def __init__(self, app: ASGIApp, origins: AllowedOrigins, max_age_s: int) -> None:
        super().__init__(app)
        self.origins = origins
        self.max_age_s = max_age_s

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        if origin is None:  # not a browser's cross-origin request
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in request_headers:
            response = await self._preflight(origin, request_headers)
            await response(scope, receive, send)
            return
        # Shared with the request's `request.state`, also when an inner layer copies the scope.
        state = scope.setdefault("state", {})

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                grant = await self.origins.for_request(origin, _tenant_of(state))
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers.add_vary_header("Origin")
                if grant is not None:
                    _allow(headers, origin, grant)
                    headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                message = {**message, "headers": headers.raw}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, request_headers: Headers) -> Response:
        vary = {"Vary": "Origin, Access-Control-Request-Headers"}
        grant = await self.origins.for_preflight(origin)
        if grant is None:
            return JSONResponse(
                {"error": "forbidden", "message": "this origin may not call the API"}, 403, vary
            )
        asked = request_headers.get("access-control-request-headers", "").strip()
        if asked and (len(asked) > MAX_REQUEST_HEADERS_CHARS or not _HEADER_NAMES.fullmatch(asked)):
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "message": "Access-Control-Request-Headers is not a list of header names",
                },
                400,
                vary,
            )
        response = Response(status_code=200, headers=vary)
        _allow(response.headers, origin, grant)
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        if asked:
            # Whatever headers the page sends (the OpenAI SDKs add their own): the origin is
            # what is checked, and the answer to the request itself checks it again.
            response.headers["Access-Control-Allow-Headers"] = ", ".join(
                name.strip().lower() for name in asked.split(",")
            )
        response.headers["Access-Control-Max-Age"] = str(self.max_age_s)
        return response
