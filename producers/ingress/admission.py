"""Admission of billable work: rate limits per API key and per end user, monthly budgets.

Any billable route uses it in two steps: take its caller as `RateLimitedCaller` instead of
`Authenticated` (it counts the request and fills the X-RateLimit headers), then
call `admit_billable` with a hold id before publishing work. It refuses a model
no route serves (404) or that has no price (400 `model_not_priced`), before
anything is counted. The hold id is
the id the work's `usage.recorded` will carry as `job_id`: when that event
arrives the usage group settles the reservation; a failed job releases it.

    caller: RateLimitedCaller
    ...
    await admit_billable(request, caller, model=body.model, input_tokens=n,
                         max_output_tokens=body.max_tokens, hold_id=job_id,
                         user_id=body.user_id)

The end user of a request (a signed-in user, else the user the body names) is held to
their own rate limits and budget as well, or the tenant's default for its users; a
request that names no user is not.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from infra.budget_holds import BudgetHolds
from infra.budget_holds import Scope as BudgetScope
from infra.db.budgets import budget_state
from infra.db.engine import Database
from infra.errors import ModelNotPriced, TransientError, UnknownModel
from infra.pricing import PriceTable
from infra.providers.tokens import estimate_job
from infra.rate_windows import RateWindow, RateWindows
from infra.routing.catalog import ModelCatalog
from infra.settings import Settings
from producers.ingress.auth import authenticate
from producers.ingress.caller import Caller, user_subject
from producers.ingress.errors import BudgetExceeded, ModelRefused, RateLimited, unavailable
from producers.ingress.middleware import HttpMiddleware
from producers.ingress.state import services
from schemas.jobs import ChatJob
from schemas.money import usd_text
from schemas.usage import current_period, period_reset


@dataclass
class Admission:
    settings: Settings
    db: Database
    holds: BudgetHolds
    windows: RateWindows
    prices: PriceTable
    catalog: ModelCatalog


def admission(request: Request) -> Admission:
    return request.app.state.admission


async def admission_dependency(request: Request) -> Admission:
    """`admission` for Depends: FastAPI runs a plain function in a thread, once per request."""
    return admission(request)


def estimate_input_tokens(job: ChatJob) -> int:
    """What the job sends upstream, counted before it runs: every message's text (its
    text parts when it has parts), images, tool calls, tool definitions and the answer's
    schema, with the tokenizer up to a size and by bytes beyond it (infra.providers.tokens)."""
    return estimate_job(job)


async def rate_limited(request: Request) -> Caller:
    """Authenticate and count the request against the key's requests per minute.

    One dependency, not three: FastAPI's resolution of each costs more than
    what it returns, on every request.
    """
    caller = await authenticate(request, services(request))
    window = await _hit(admission(request), caller, requests=1, tokens=0)
    request.state.rate_limit = window
    if not window.admitted:
        raise _too_many(window)
    return caller


# A billable route's caller: authenticated, then within its request rate.
RateLimitedCaller = Annotated[Caller, Depends(rate_limited)]


async def admit_billable(
    request: Request,
    caller: Caller,
    *,
    model: str,
    input_tokens: int,
    max_output_tokens: int | None,
    hold_id: uuid.UUID,
    requests: int = 0,
    user_id: str | None = None,
) -> None:
    """Count the tokens per minute, then reserve the estimated cost on the budgets.

    `requests=1` counts the request itself in the same step, for a route that
    is not behind `rate_limited`: one script call instead of two.

    Raises a SubmissionError (producers.ingress.errors): ModelRefused for a model that may
    not be named, RateLimited, BudgetExceeded or Unavailable. On success the reservation
    stays until the usage arrives; call `release_billable` if the work is
    not published after all. `user_id`: the end user the request names, for an API key
    caller (a signed-in user is the caller's own).
    """
    adm = admission(request)
    output_tokens = (
        adm.settings.budget_default_output_tokens
        if max_output_tokens is None
        else max_output_tokens
    )
    try:
        estimate = adm.catalog.estimate(model, input_tokens, output_tokens)
    except (UnknownModel, ModelNotPriced) as exc:
        raise ModelRefused(exc) from exc
    tokens = input_tokens + output_tokens
    window = await _hit(adm, caller, requests=requests, tokens=tokens)
    request.state.rate_limit = window
    if not window.admitted:
        raise _too_many(window)
    user = caller.user_id or user_id or None
    period = current_period()
    scopes = [BudgetScope("tenant", caller.tenant_id)]
    if caller.key_id is not None:
        scopes.append(BudgetScope("key", caller.key_id))
    if user is not None:
        subject = user_subject(caller.tenant_id, user)
        await _hit_user(request, adm, caller.tenant_id, subject, tokens)
        scopes.append(BudgetScope("user", subject))
    try:
        refused = await adm.holds.reserve(
            caller.tenant_id, scopes, period, hold_id, estimate, adm.settings.budget_hold_ttl_s
        )
    except TransientError as exc:
        raise unavailable("budgets", exc) from exc
    if refused is not None:
        raise await _budget_exceeded(adm, caller.tenant_id, refused, period, user)


async def release_billable(request: Request, caller: Caller, hold_id: uuid.UUID) -> None:
    await admission(request).holds.release(caller.tenant_id, hold_id)


async def _hit(adm: Admission, caller: Caller, *, requests: int, tokens: int) -> RateWindow:
    try:
        return await adm.windows.hit(
            caller.subject_id,
            requests=requests,
            tokens=tokens,
            rpm=adm.settings.rate_limit_requests_per_min,
            tpm=adm.settings.rate_limit_tokens_per_min,
        )
    except TransientError as exc:
        raise unavailable("rate limits", exc) from exc


async def _hit_user(
    request: Request, adm: Admission, tenant_id: uuid.UUID, subject: uuid.UUID, tokens: int
) -> None:
    """The request and its tokens in the user's windows, after the key's: a request the
    key refused never counts for the user (one the user refuses counted for the key)."""
    try:
        window = await adm.windows.hit_user(tenant_id, subject, requests=1, tokens=tokens)
    except TransientError as exc:
        raise unavailable("rate limits", exc) from exc
    if not window.admitted:
        request.state.rate_limit = window
        raise _too_many(window, "user")


def _too_many(window: RateWindow, whose: str = "API key") -> RateLimited:
    what = "tokens" if window.refused_by == "tokens" else "requests"
    return RateLimited(
        429,
        "rate_limited",
        f"{what} per minute limit of this {whose} reached",
        {"Retry-After": str(max(1, math.ceil(window.reset_s)))},
    )


async def _budget_exceeded(
    adm: Admission, tenant_id: uuid.UUID, scope: BudgetScope, period: str, user: str | None
) -> BudgetExceeded:
    state = await budget_state(adm.db, tenant_id, scope.kind, scope.id, period)
    resets_at = period_reset(period)
    name = {"tenant": "the tenant's", "user": f"user {user!r}'s"}.get(
        scope.kind, f"API key {scope.id}'s"
    )
    return BudgetExceeded(
        f"{name} monthly budget is spent; it resets at {resets_at.isoformat()}",
        {
            "scope": scope.kind,
            "api_key_id": str(scope.id) if scope.kind == "key" else None,
            "user_id": user if scope.kind == "user" else None,
            "monthly_usd": None if state.monthly_usd is None else usd_text(state.monthly_usd),
            "spent_usd": usd_text(state.spent_usd),
            "period": period,
            "resets_at": resets_at.isoformat(),
        },
    )


def rate_limit_headers(window: RateWindow) -> list[tuple[bytes, bytes]]:
    values = {
        "x-ratelimit-limit": window.requests_limit,
        "x-ratelimit-remaining": max(window.requests_limit - window.requests_used, 0),
        "x-ratelimit-reset": max(1, math.ceil(window.reset_s)),
        "x-ratelimit-limit-tokens": window.tokens_limit,
        "x-ratelimit-remaining-tokens": max(window.tokens_limit - window.tokens_used, 0),
    }
    return [(k.encode(), str(v).encode()) for k, v in values.items()]


class RateLimitHeaders(HttpMiddleware):
    """Adds the key's rate-limit headers to every response, errors included."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            window = state.get("rate_limit")
            if message["type"] == "http.response.start" and window is not None:
                message = {**message, "headers": [*message["headers"], *rate_limit_headers(window)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    app.add_middleware(RateLimitHeaders)
