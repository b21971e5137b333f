"""Admission of the work a rule starts: the tenant's rate limits and budget, as at the ingress.

A webhook comes with no API key, so what its rules start counts against a
window of the tenant's own (the default requests and tokens per minute) and
reserves its estimated cost on the tenant's monthly budget. The reservation's
id is the job's id, as at the ingress: the job's `usage.recorded` settles it,
its `ai.job.failed` releases it, and asking again (a redelivered webhook)
keeps the first reservation.

A refusal is an error text that starts with its code (`budget_exceeded: …`,
`rate_limited: …`): the started job fails with it, visibly on GET /v1/jobs/{id}.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from infra.budget_holds import BudgetHolds, Scope
from infra.errors import ModelNotPriced, UnknownModel
from infra.providers.tokens import estimate_job
from infra.rate_windows import RateWindows
from infra.routing.catalog import ModelCatalog
from infra.settings import Settings
from schemas.ids import user_subject
from schemas.jobs import ChatJob
from schemas.usage import current_period, period_reset

BUDGET_EXCEEDED = "budget_exceeded"
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Limits:
    settings: Settings
    holds: BudgetHolds
    windows: RateWindows
    models: ModelCatalog


async def admit_job(
    limits: Limits, tenant_id: uuid.UUID, job_id: uuid.UUID, job: ChatJob
) -> str | None:
    """Count the job's request and tokens, then reserve its estimated cost (on the
    tenant's budget, and on its user's when the job names one: a user's schedule); None
    when admitted, else why not (raises TransientError when Redis cannot say)."""
    settings = limits.settings
    output_tokens = job.max_tokens
    if output_tokens is None:
        output_tokens = settings.budget_default_output_tokens
    input_tokens = estimate_job(job)
    refused = await _rate(limits, tenant_id, requests=1, tokens=input_tokens + output_tokens)
    if refused is not None:
        return refused
    period = current_period()
    try:
        amount = limits.models.estimate(job.model, input_tokens, output_tokens)
    except (UnknownModel, ModelNotPriced) as exc:  # routing changed since the rule was made
        return f"{exc.code}: {exc}"
    scopes = [Scope("tenant", tenant_id)]
    if job.user_id is not None:
        scopes.append(Scope("user", user_subject(tenant_id, job.user_id)))
    scope = await limits.holds.reserve(
        tenant_id, scopes, period, job_id, amount, settings.budget_hold_ttl_s
    )
    if scope is None:
        return None
    resets_at = period_reset(period).isoformat()
    whose = "the user's" if scope.kind == "user" else "the tenant's"
    return f"{BUDGET_EXCEEDED}: {whose} monthly budget is spent; it resets at {resets_at}"


async def admit_action(limits: Limits, tenant_id: uuid.UUID) -> str | None:
    """An action costs no tokens: it counts one request of the tenant's window."""
    return await _rate(limits, tenant_id, requests=1, tokens=0)


async def _rate(limits: Limits, tenant_id: uuid.UUID, *, requests: int, tokens: int) -> str | None:
    settings = limits.settings
    window = await limits.windows.hit(
        tenant_id,
        requests=requests,
        tokens=tokens,
        rpm=settings.rate_limit_requests_per_min,
        tpm=settings.rate_limit_tokens_per_min,
    )
    if window.admitted:
        return None
    what = "tokens" if window.refused_by == "tokens" else "requests"
    return f"{RATE_LIMITED}: the {what} per minute limit of the tenant's rules was reached"
