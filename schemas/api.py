"""HTTP response models of the ingress."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.jobs import JobStatus, TokenUsage
from schemas.money import Usd


class JobAccepted(BaseModel):
    id: uuid.UUID
    status: JobStatus
    events_url: str
    url: str


class JobView(BaseModel):
    id: uuid.UUID
    kind: str
    status: JobStatus
    model: str
    provider: str | None
    user_id: str | None
    result: str | None
    error: str | None
    finish_reason: str | None
    usage: TokenUsage | None
    # What the answer cost, once there is one.
    cost_usd: Usd | None
    metadata: dict[str, str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # When `model` was chosen by a named route (`model: "auto"`): route, model, tier, rule.
    route: dict[str, Any] | None = None


class JobList(BaseModel):
    """GET /v1/jobs: a page of jobs, newest first, in OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[JobView]
    first_id: uuid.UUID | None
    last_id: uuid.UUID | None
    has_more: bool


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str


class ErrorBody(BaseModel):
    error: str
    details: list[ErrorDetail] = []


class CallerView(BaseModel):
    """GET /v1/me: who the credential of the request is."""

    model_config = ConfigDict(populate_by_name=True)

    tenant_id: uuid.UUID
    tenant: str = Field(validation_alias="tenant_name")
    role: str
    key_id: uuid.UUID | None = None
    user_id: str | None = None
    scopes: list[str]

    @field_validator("scopes", mode="before")
    @classmethod
    def _sorted(cls, scopes: Iterable[str]) -> list[str]:
        return sorted(scopes)
