"""Table models. Projections of the event log; never used as events themselves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(nullable: bool = True) -> Any:
    """A timestamp column (with time zone), None until set."""
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


def timestamp_now() -> Any:
    """A timestamp column (with time zone) that a new row fills with the time it is made."""
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(unique=True, index=True, max_length=200)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_now()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    name: str = Field(default="", max_length=200)
    key_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    role: str = Field(default="developer", max_length=16)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_now()
    revoked_at: datetime | None = timestamp()
    expires_at: datetime | None = timestamp()
    # CIDRs the key may be used from; empty means anywhere.
    allowed_ips: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    last_used_at: datetime | None = timestamp()
    # After a rotation the previous secret keeps working until previous_valid_until.
    previous_key_hash: str | None = Field(default=None, unique=True, max_length=64)
    previous_valid_until: datetime | None = timestamp()


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    api_key_id: uuid.UUID | None = Field(default=None, foreign_key="api_keys.id")
    user_id: str | None = Field(default=None, max_length=200)
    kind: str = Field(max_length=32)
    model: str = Field(max_length=200)
    provider: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16, index=True)
    request: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    job_metadata: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False)
    )
    error: str | None = None
    attempts: int = 0
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_event_id: uuid.UUID
    published_at: datetime | None = timestamp()
    created_at: datetime = timestamp_now()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()


class JobResult(SQLModel, table=True):
    __tablename__ = "job_results"

    job_id: uuid.UUID = Field(primary_key=True, foreign_key="jobs.id")
    text: str
    finish_reason: str | None = Field(default=None, max_length=64)
    provider: str = Field(max_length=64)
    model: str = Field(max_length=200)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Field(
        default=Decimal("0"), sa_column=Column(Numeric(18, 8), nullable=False)
    )
    # Tool calls the model asked for ([{id, name, arguments}]), if any.
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None, sa_column=Column(JSONB, nullable=True)
    )
    # Served from the response cache: no upstream call, no cost.
    cached: bool = False
    event_id: uuid.UUID
    created_at: datetime = timestamp_now()


class ProcessedEvent(SQLModel, table=True):
    """Claimed in the same transaction as a handler's effects: at-least-once made exactly-once."""

    __tablename__ = "processed_events"

    consumer_group: str = Field(primary_key=True, max_length=200)
    event_id: uuid.UUID = Field(primary_key=True)
    processed_at: datetime = timestamp_now()


class StoredFile(SQLModel, table=True):
    """An uploaded or generated file (OpenAI Files API); the bytes live in the file store."""

    __tablename__ = "files"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    # The signed-in user who uploaded it (or whose batch wrote it); None for an API key's.
    user_id: str | None = Field(default=None, max_length=200)
    filename: str = Field(max_length=500)
    purpose: str = Field(max_length=32)
    bytes: int
    storage_key: str = Field(max_length=500)
    created_at: datetime = timestamp_now()
    deleted_at: datetime | None = timestamp()


class Batch(SQLModel, table=True):
    __tablename__ = "batches"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    api_key_id: uuid.UUID | None = Field(default=None, foreign_key="api_keys.id")
    # The signed-in user who created it; its lines' jobs and result files carry this user.
    user_id: str | None = Field(default=None, max_length=200)
    input_file_id: uuid.UUID
    endpoint: str = Field(max_length=200)
    completion_window: str = Field(max_length=16)
    status: str = Field(max_length=16)
    errors: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB))
    batch_metadata: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSONB))
    output_file_id: uuid.UUID | None = None
    error_file_id: uuid.UUID | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    created_at: datetime = timestamp_now()
    expires_at: datetime | None = timestamp()
    in_progress_at: datetime | None = timestamp()
    finalizing_at: datetime | None = timestamp()
    completed_at: datetime | None = timestamp()
    failed_at: datetime | None = timestamp()
    cancelling_at: datetime | None = timestamp()
    cancelled_at: datetime | None = timestamp()
    expired_at: datetime | None = timestamp()


class BatchLine(SQLModel, table=True):
    """One request of a batch and the job that runs it (job id derived from batch and line)."""

    __tablename__ = "batch_lines"

    job_id: uuid.UUID = Field(primary_key=True)
    batch_id: uuid.UUID = Field(foreign_key="batches.id")
    line_no: int
    custom_id: str = Field(max_length=500)
    status: str = Field(max_length=16)
