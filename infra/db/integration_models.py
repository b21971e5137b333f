"""Tables of webhooks in and connector actions out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, LargeBinary
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from infra.db.models import timestamp, timestamp_now


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    source: str = Field(max_length=32)
    signature_header: str = Field(max_length=100)
    # The signing secret, sealed: the receiver needs it back to verify.
    secret_key_id: str = Field(max_length=64)
    secret_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = timestamp_now()


class WebhookDelivery(SQLModel, table=True):
    """One row per (endpoint, delivery id): a redelivered webhook is published once."""

    __tablename__ = "webhook_deliveries"

    endpoint_id: uuid.UUID = Field(primary_key=True, foreign_key="webhook_endpoints.id")
    delivery_id: str = Field(primary_key=True, max_length=300)
    event_id: uuid.UUID
    published_at: datetime | None = timestamp()
    received_at: datetime = timestamp_now()


class Rule(SQLModel, table=True):
    __tablename__ = "webhook_rules"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoints.id", index=True)
    event_type: str = Field(max_length=200)
    filter: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    job: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    action: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    created_at: datetime = timestamp_now()


class RuleRun(SQLModel, table=True):
    """An AI job started by a rule whose action waits for the job's result."""

    __tablename__ = "webhook_rule_runs"

    job_id: uuid.UUID = Field(primary_key=True, foreign_key="jobs.id")
    tenant_id: uuid.UUID
    rule_id: uuid.UUID = Field(foreign_key="webhook_rules.id")
    webhook_event_id: uuid.UUID
    context: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    action: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_now()


class Connection(SQLModel, table=True):
    __tablename__ = "connections"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    connector: str = Field(max_length=64)
    name: str = Field(default="", max_length=200)
    key_id: str = Field(max_length=64)
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default="active", max_length=16)  # active | deleted
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()
    rotated_at: datetime | None = timestamp()
    last_used_at: datetime | None = timestamp()
    deleted_at: datetime | None = timestamp()


class ActionAttempt(SQLModel, table=True):
    """The record of calling a vendor for one action job, written BEFORE the call.

    A redelivered event that finds an attempt whose outcome is unknown (the
    worker died mid-call) does not call again: one Slack message, not two.
    """

    __tablename__ = "action_attempts"

    job_id: uuid.UUID = Field(primary_key=True, foreign_key="jobs.id")
    event_id: uuid.UUID
    status: str = Field(max_length=16)  # calling | succeeded | failed
    calls: int = 0
    lease_until: datetime | None = timestamp()
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    error: str | None = None
    updated_at: datetime = timestamp_now()
