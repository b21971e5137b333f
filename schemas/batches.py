"""Payloads of the batch events and the OpenAI-compatible Files and Batches formats."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.request import RequestModel

BATCH_CREATED = "batch.created"
BATCH_CANCEL_REQUESTED = "batch.cancel.requested"
# A batch reached a final status; subscribers of outbound webhooks see it under this name.
BATCH_COMPLETED = "batch.completed"

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
TERMINAL_STATUSES = ("failed", "completed", "expired", "cancelled")
CHAT_COMPLETIONS = "/v1/chat/completions"
ENDPOINTS = (CHAT_COMPLETIONS,)


def file_public_id(file_id: uuid.UUID) -> str:
    return f"file-{file_id.hex}"


def batch_public_id(batch_id: uuid.UUID) -> str:
    return f"batch_{batch_id.hex}"


def parse_public_id(prefix: str, value: str) -> uuid.UUID | None:
    """The uuid behind `file-…`/`batch_…`, or None for anything else."""
    if not value.startswith(prefix):
        return None
    try:
        return uuid.UUID(hex=value[len(prefix) :])
    except ValueError:
        return None


class BatchCreated(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: uuid.UUID
    api_key_id: uuid.UUID | None = None


class BatchCancelRequested(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: uuid.UUID


class BatchCompleted(BaseModel):
    """A batch is done: completed, failed (its file was refused), expired or cancelled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str = Field(description="the public id, batch_…")
    status: Literal["completed", "failed", "expired", "cancelled"]
    request_counts: dict[str, int] = Field(description="total, completed, failed")
    output_file_id: str | None = None
    error_file_id: str | None = None
    user_id: str | None = None


class CreateBatch(RequestModel):
    """The body of POST /v1/batches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=100)
    endpoint: str = Field(min_length=1, max_length=200)
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class LineError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: dict[str, Any] | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    metadata: dict[str, str] | None = None


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None
