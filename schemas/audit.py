"""The audit trail of a job: every event of it, across topics, with who and when."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntry(BaseModel):
    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    topic: str
    partition: int
    offset: int
    tenant_id: uuid.UUID
    api_key_id: uuid.UUID | None
    actor_kind: str
    actor_id: str
    causation_id: uuid.UUID | None
    payload: dict[str, Any]
    dead_letter_error: str | None = None


class AuditTrail(BaseModel):
    job_id: uuid.UUID
    events: list[AuditEntry]
