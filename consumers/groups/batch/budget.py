"""Batch lines are billed like interactive requests: each line's estimated cost is
reserved on the tenant's, the key's and the line's user's monthly budgets before the line
is published.

A line the budget cannot cover does not run: it fails with `budget_exceeded` in the
error file. The reservation's id is the line's job id, as with the ingress: the
line's `usage.recorded` settles it, its `ai.job.failed` releases it, and
cancelling or expiring the batch releases those of the lines that will not run. Reserving
again after a crash keeps the first reservation. A reservation lasts as long as
the batch's completion window, since a line may wait in the lane that long.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from infra.budget_holds import BudgetHolds, Scope
from infra.db.batches import PendingLine
from infra.db.models import Batch
from infra.errors import PermanentError
from infra.providers.tokens import estimate_job
from infra.routing.catalog import ModelCatalog
from infra.settings import Settings
from schemas.ids import user_subject
from schemas.jobs import ChatJob
from schemas.usage import current_period, period_reset

RELEASE_CHUNK = 1000


@dataclass(frozen=True)
class Refusal:
    job_id: uuid.UUID
    message: str


def estimate_cost(job: ChatJob, models: ModelCatalog, default_output_tokens: int) -> Decimal:
    """Everything the line sends in (counted as the ingress counts it), its max_tokens
    (or the default) out; an embedding line has no output.

    Raises UnknownModel or ModelNotPriced for a model that may no longer be named.
    """
    if job.kind == "embedding":
        output_tokens = 0
    else:
        output_tokens = job.max_tokens if job.max_tokens is not None else default_output_tokens
    return models.estimate(job.model, estimate_job(job), output_tokens)


async def admit(
    batch: Batch,
    lines: list[PendingLine],
    jobs: list[ChatJob],
    holds: BudgetHolds,
    models: ModelCatalog,
    settings: Settings,
) -> list[Refusal]:
    """Reserves each line's cost (`jobs`: the lines' requests, in order); the lines refused."""
    if not lines:
        return []
    # A line whose model lost its route or price since the file was read does not run.
    refusals: list[Refusal] = []
    priced: list[tuple[PendingLine, Decimal, str | None]] = []
    for line, job in zip(lines, jobs, strict=True):
        try:
            estimate = estimate_cost(job, models, settings.budget_default_output_tokens)
        except PermanentError as exc:
            refusals.append(Refusal(line.job_id, str(exc)))
        else:
            priced.append((line, estimate, job.user_id or None))
    return refusals + await _reserve(batch, priced, holds, settings)


async def _reserve(
    batch: Batch,
    priced: list[tuple[PendingLine, Decimal, str | None]],
    store: BudgetHolds,
    settings: Settings,
) -> list[Refusal]:
    if not priced:
        return []
    users = [
        None if user is None else Scope("user", user_subject(batch.tenant_id, user))
        for _, _, user in priced
    ]
    scopes = [Scope("tenant", batch.tenant_id)]
    if batch.api_key_id is not None:
        scopes.append(Scope("key", batch.api_key_id))
    period = current_period()
    holds = [(line.job_id, estimate) for line, estimate, _ in priced]
    answers = await store.reserve_many(
        batch.tenant_id, scopes, period, holds, settings.batch_completion_window_s, users
    )
    resets = period_reset(period).isoformat()
    refusals = []
    for (line, _, user), refused_by in zip(priced, answers, strict=True):
        if refused_by is not None:
            owner = {"tenant": "the tenant's", "user": f"user {user!r}'s"}.get(
                refused_by.kind, "the API key's"
            )
            message = f"{owner} monthly budget is spent; it resets at {resets}"
            refusals.append(Refusal(line.job_id, message))
    return refusals


async def release(batch: Batch, job_ids: list[uuid.UUID], holds: BudgetHolds) -> None:
    """Drops the reservations of lines that will not run (cancelled, expired)."""
    for start in range(0, len(job_ids), RELEASE_CHUNK):
        await holds.settle(batch.tenant_id, job_ids[start : start + RELEASE_CHUNK], [])
