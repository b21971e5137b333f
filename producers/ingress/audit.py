"""GET /v1/audit/jobs/{id}: the ordered trail of every event of one job (admin keys only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from infra.db import event_log
from infra.db.engine import Database
from producers.ingress.access import may
from producers.ingress.auth import authenticate
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.state import Services, services_dependency
from schemas.audit import AuditEntry, AuditTrail

router = APIRouter(prefix="/v1/audit", tags=["audit"])


async def job_trail(db: Database, caller: Caller, job_id: uuid.UUID) -> AuditTrail:
    """The trail as the caller may see it; raises ApiError 403 / 404."""
    if not may(caller.role, caller.scopes, "audit:read"):
        raise ApiError(403, "forbidden", "the audit trail needs an admin key (or an auditor key)")
    rows = await event_log.job_trail(db, caller.tenant_id, job_id)
    if not rows:
        # Another tenant's job looks exactly like no job at all.
        raise ApiError(404, "not_found", f"no events of job {job_id} (yet)")
    return AuditTrail(
        job_id=job_id,
        events=[AuditEntry.model_validate(row, from_attributes=True) for row in rows],
    )


@router.get("/jobs/{job_id}", response_model=AuditTrail)
async def get_job_trail(
    job_id: uuid.UUID,
    caller: Annotated[Caller, Depends(authenticate)],
    svc: Annotated[Services, Depends(services_dependency)],
) -> AuditTrail:
    return await job_trail(svc.db, caller, job_id)
