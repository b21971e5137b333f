"""Payloads and HTTP bodies of webhooks in and connector actions out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.request import RequestModel

WEBHOOK_RECEIVED = "webhook.received"
ACTION_REQUESTED = "integration.action.requested"
ACTION_SUCCEEDED = "integration.action.succeeded"
ACTION_FAILED = "integration.action.failed"

WebhookSource = Literal["github", "stripe", "slack", "standard", "hmac"]


class WebhookReceived(BaseModel):
    """A delivery whose signature checked out. `body` is the raw body, base64, for audit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_id: uuid.UUID
    source: WebhookSource
    delivery_id: str
    event_type: str
    headers: dict[str, str]
    body: str = Field(description="the raw request body, base64")
    payload: dict[str, Any] | None = Field(description="the body parsed as JSON, if it is")


class ActionRequested(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    connection_id: uuid.UUID
    connector: str
    action: str
    params: dict[str, Any]


class ActionFinished(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    connector: str
    action: str
    result: dict[str, Any] | None = None
    error: str | None = None


# HTTP bodies ------------------------------------------------------------------


class WebhookEndpointCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: WebhookSource
    secret: str | None = Field(default=None, min_length=8, max_length=500)
    signature_header: str = Field(
        default="X-Signature", max_length=100, description="hmac only: the header to read"
    )


class WebhookEndpointCreated(BaseModel):
    id: uuid.UUID
    url: str
    source: WebhookSource
    secret: str | None = Field(default=None, description="only when generated; shown once")


class ConnectionCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    connector: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=200)
    credentials: dict[str, Any]


class ConnectionView(BaseModel):
    """A connection as the API shows it: never a secret, only the credentials' field names."""

    id: uuid.UUID
    connector: str
    name: str
    status: Literal["active"] = "active"
    credential_fields: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    rotated_at: datetime | None = None
    last_used_at: datetime | None = None


class ConnectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConnectionView]
    first_id: uuid.UUID | None = None
    last_id: uuid.UUID | None = None
    has_more: bool


class ConnectionUpdate(RequestModel):
    """PATCH /v1/connections/{id}: a new name, and/or new credentials (a rotation)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    name: str | None = Field(default=None, max_length=200)
    credentials: dict[str, Any] | None = None


Revocation = Literal["revoked", "not_offered", "failed"]


class ConnectionDeleted(BaseModel):
    """DELETE /v1/connections/{id}: gone, and whether the vendor revoked its credentials
    (`revoked`), offers no revocation (`not_offered`), or could not be reached or refused
    (`failed`, with the vendor's words: revoke them by hand)."""

    id: uuid.UUID
    deleted: Literal[True] = True
    revocation: Revocation
    revocation_error: str | None = None


class ActionCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    connection_id: uuid.UUID
    action: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]


class RuleJob(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    prompt: str = Field(min_length=1, max_length=100_000)
    system: str | None = Field(default=None, max_length=100_000)


# The action a rule runs: what POST /v1/actions takes. (No docstring: the API documents
# both alike.)
class RuleAction(ActionCreate):
    pass


class RuleCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_id: uuid.UUID
    event_type: str = Field(min_length=1, max_length=200, description="'*' matches any")
    filter: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    job: RuleJob | None = None
    action: RuleAction | None = None

    @model_validator(mode="after")
    def _something_to_do(self) -> RuleCreate:
        if self.job is None and self.action is None:
            raise ValueError("a rule needs a job, an action or both")
        return self


class RuleView(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    filter: dict[str, Any]
    job: RuleJob | None
    action: RuleAction | None
