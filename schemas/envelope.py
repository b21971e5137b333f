"""The event envelope every Kafka message carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from schemas.ids import uuid7

P = TypeVar("P", bound=BaseModel)


class Actor(BaseModel):
    """Who caused an event: an API key or a signed-in user of a tenant, a system component,
    a webhook."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(description="api_key | user | system | webhook")
    id: str


class Envelope(BaseModel, Generic[P]):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID = Field(default_factory=uuid7)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tenant_id: uuid.UUID
    actor: Actor
    correlation_id: uuid.UUID = Field(description="the job this event belongs to")
    causation_id: uuid.UUID | None = Field(default=None, description="the event that caused it")
    # SerializeAsAny: an unparametrized Envelope still writes the payload's own fields.
    payload: SerializeAsAny[P]


class RawEnvelope(Envelope[Any]):
    """An envelope whose payload is not parsed yet: used to route by `type`."""

    payload: dict[str, Any]
