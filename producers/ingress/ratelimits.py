"""Per-key rate limits: an admin sets a key's requests and tokens per minute.

Postgres keeps what was set and Redis a copy the limiter reads on each
request, so every ingress applies a change from the key's next request on.
The copy is rewritten from Postgres when an ingress starts (Redis may have
lost it).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from infra.db.engine import Database
from infra.db.rate_limits import (
    KeyLimits,
    all_key_limits,
    all_user_limits,
    clear_key_limits,
    key_limits,
    set_key_limits,
)
from infra.errors import TransientError
from infra.rate_windows import RateWindows
from producers.ingress import user_limits
from producers.ingress.admission import Admission, admission, rate_limited
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import unavailable
from producers.ingress.scope import require_key
from schemas.usage import RateLimitIn, RateLimitView

router = APIRouter(prefix="/v1/ratelimits", tags=["rate limits"])

Owner = Annotated[Caller, Depends(rate_limited)]
Adm = Annotated[Admission, Depends(admission)]
Body = Annotated[RateLimitIn, Depends(json_body(RateLimitIn))]


@router.get("/keys/{key_id}", response_model=RateLimitView)
async def get_key_limits(key_id: uuid.UUID, caller: Owner, adm: Adm) -> RateLimitView:
    """A key's limits per minute: a key its own; another key's with keys:read."""
    await require_key(adm.db, caller, key_id, "limits")
    return _view(adm, await key_limits(adm.db, caller.tenant_id, key_id))


@router.put("/keys/{key_id}", response_model=RateLimitView)
async def put_key_limits(key_id: uuid.UUID, body: Body, caller: Owner, adm: Adm) -> RateLimitView:
    """Hold one key to its own limits per minute (ratelimits:write; another key: keys:read)."""
    await require_key(adm.db, caller, key_id, "limits")
    limits = KeyLimits(key_id, body.rpm, body.tpm)
    await set_key_limits(adm.db, caller.tenant_id, limits)
    await _copy_to_redis(adm.windows, limits)
    return _view(adm, limits)


@router.delete("/keys/{key_id}", status_code=204)
async def delete_key_limits(key_id: uuid.UUID, caller: Owner, adm: Adm) -> Response:
    """Back to the platform's defaults (ratelimits:write; another key: keys:read)."""
    await require_key(adm.db, caller, key_id, "limits")
    await clear_key_limits(adm.db, key_id)
    await _copy_to_redis(adm.windows, KeyLimits(key_id, None, None))
    return Response(status_code=204)


async def restore(db: Database, windows: RateWindows) -> None:
    """Rewrite Redis's copy of every key's and user's own limits from Postgres."""
    for limits in await all_key_limits(db):
        await windows.set_key_limits(
            limits.api_key_id, limits.requests_per_min, limits.tokens_per_min
        )
    for users in await all_user_limits(db):
        await user_limits.copy_to_redis(windows, users)


async def _copy_to_redis(windows: RateWindows, limits: KeyLimits) -> None:
    try:
        await windows.set_key_limits(
            limits.api_key_id, limits.requests_per_min, limits.tokens_per_min
        )
    except TransientError as exc:
        # Postgres has the change; a retry of the same call copies it.
        raise unavailable("rate limits", exc) from exc


def _view(adm: Admission, limits: KeyLimits) -> RateLimitView:
    defaults = adm.settings
    return RateLimitView(
        api_key_id=limits.api_key_id,
        rpm=limits.requests_per_min or defaults.rate_limit_requests_per_min,
        tpm=limits.tokens_per_min or defaults.rate_limit_tokens_per_min,
        own=RateLimitIn(rpm=limits.requests_per_min, tpm=limits.tokens_per_min),
    )
