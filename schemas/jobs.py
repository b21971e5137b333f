"""Payloads of the job events."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.memory import MemoryContext

JOB_REQUESTED = "ai.job.requested"
JOB_STARTED = "ai.job.started"
JOB_SUCCEEDED = "ai.job.succeeded"
JOB_FAILED = "ai.job.failed"
JOB_RETRYING = "ai.job.retrying"
USAGE_RECORDED = "usage.recorded"

JobStatus = Literal["queued", "running", "succeeded", "failed"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=1_000_000)


class ChatJob(BaseModel):
    """What to run: a chat completion. The ingress request body and the event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["chat"] = "chat"
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    user_id: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    # Recall the user's memories into the prompt; with `remember`, store the exchange.
    memory: MemoryContext | None = None


class JobRequested(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    job: ChatJob


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0


class JobStarted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    provider: str
    model: str


class JobSucceeded(BaseModel):
    """Version 2 carries the answer and its cost, so the jobs projection can be
    rebuilt from events alone, without calling the model again."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA_VERSION: ClassVar[int] = 2

    job_id: uuid.UUID
    provider: str
    model: str
    usage: TokenUsage
    finish_reason: str | None = None
    # None only in events upcast from version 1, which did not record them.
    text: str | None = None
    cost_usd: Decimal | None = None

    @staticmethod
    def upcast_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "text": None, "cost_usd": None}


class JobRetrying(BaseModel):
    """A provider call failed with a transient error and is tried again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    provider: str
    attempt: int = Field(description="the attempt about to start, 2 or more")
    error: str


class JobFailed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    error: str
    retryable: bool = False


class UsageRecorded(BaseModel):
    """One billable act. Cost is a decimal string: money is never a float."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    api_key_id: uuid.UUID | None
    user_id: str | None
    kind: Literal["model_call", "embedding", "integration_call"] = "model_call"
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal = Decimal("0")
    cached: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)
