"""GET /v1/audit/jobs/{id}: the ordered trail of every event of one job (admin keys only).

A user's sealed payloads are shown opened; a forgotten user's (key destroyed) as
`{"redacted": true, "reason": "user forgotten"}`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from infra.db import event_log
from infra.db.engine import Database
from infra.errors import PermanentError
from infra.kafka.sealing import Sealer
from producers.ingress.access import may
from producers.ingress.auth import authenticate
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.state import Services, services_dependency
from schemas.audit import AuditEntry, AuditTrail
from schemas.sealing import REDACTED

router = APIRouter(prefix="/v1/audit", tags=["audit"])


async def job_trail(
    db: Database, caller: Caller, job_id: uuid.UUID, sealer: Sealer | None = None
) -> AuditTrail:
    """The trail as the caller may see it; raises ApiError 403 / 404."""
    if not may(caller.role, caller.scopes, "audit:read"):
        raise ApiError(403, "forbidden", "the audit trail needs an admin key (or an auditor key)")
    rows = await event_log.job_trail(db, caller.tenant_id, job_id)
    if not rows:
        # Another tenant's job looks exactly like no job at all.
        raise ApiError(404, "not_found", f"no events of job {job_id} (yet)")
    events = []
    for row in rows:
        entry = AuditEntry.model_validate(row, from_attributes=True)
        payload = await _opened(sealer, entry)
        events.append(entry if payload is entry.payload else entry.model_copy(update=payload))
    return AuditTrail(job_id=job_id, events=events)


async def _opened(sealer: Sealer | None, entry: AuditEntry) -> Any:
    """The entry's payload opened (as stored when in clear), or the changes that show it
    redacted or unreadable."""
    if sealer is None:
        return entry.payload
    try:
        opened = await sealer.open_payload(entry.event_id, entry.payload)
    except PermanentError:
        return {"payload": {"redacted": True, "reason": "does not open"}}
    if opened is None:
        return {"payload": dict(REDACTED)}
    return entry.payload if opened is entry.payload else {"payload": opened}


@router.get("/jobs/{job_id}", response_model=AuditTrail)
async def get_job_trail(
    job_id: uuid.UUID,
    caller: Annotated[Caller, Depends(authenticate)],
    svc: Annotated[Services, Depends(services_dependency)],
) -> AuditTrail:
    return await job_trail(svc.db, caller, job_id, svc.publisher.sealer)
