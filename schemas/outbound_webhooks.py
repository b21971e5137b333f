"""Outbound webhooks: a tenant's subscriptions of URLs to public event types, and their log.

The public event types are the names a subscriber sees (`job.succeeded`, ...); the
notifications group maps internal events to them (consumers/groups/notifications/public.py).
A subscription names types exactly or with a wildcard: "*" (every type) or "job.*".
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.request import RequestModel

# Every type a subscription may name, and what a subscriber receives.
PUBLIC_TYPES: tuple[str, ...] = (
    "job.succeeded",
    "job.failed",
    "batch.completed",
    "response.completed",
    "schedule.fired",
    "task.due",
    "budget.threshold_crossed",
    "alert.fired",
    "alert.resolved",
    "webhook.disabled",
)

# Internal: a subscription failed for too long and was disabled (notifications.events).
WEBHOOK_DISABLED = "webhook.disabled"

DeliveryStatus = Literal["pending", "delivered", "failed"]


def matches(pattern: str, event_type: str) -> bool:
    """`pattern` names `event_type`: equal, "*", or "prefix.*" for the types under prefix."""
    if pattern in ("*", event_type):
        return True
    return pattern.endswith(".*") and event_type.startswith(pattern[:-1])


def _check_types(values: list[str]) -> list[str]:
    for value in values:
        if not any(matches(value, known) for known in PUBLIC_TYPES):
            raise ValueError(
                f"{value!r} names no event type (known: {', '.join(PUBLIC_TYPES)}; "
                'wildcards: "*", "job.*")'
            )
    return sorted(set(values))


def _check_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


class WebhookDisabled(BaseModel):
    """A subscription's endpoint failed every delivery for the disabling window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: uuid.UUID
    url: str
    failing_since: datetime
    reason: str


class SubscriptionCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(min_length=8, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=32)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url_ok(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types_ok(cls, value: list[str]) -> list[str]:
        return _check_types(value)


class SubscriptionUpdate(RequestModel):
    # The validators take None: they run on the defaults too (a default is never skipped).
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    url: str | None = Field(default=None, min_length=8, max_length=2000)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=32)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _url_ok(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types_ok(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_types(value)


class SubscriptionView(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None = None
    enabled: bool
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    # Until when the secret before the last rotation still signs (beside the new one).
    previous_secret_valid_until: datetime | None = None
    created_at: datetime
    # The signing secret: only in the answer that created (or rotated) it.
    secret: str | None = None


class SubscriptionList(BaseModel):
    data: list[SubscriptionView]


class DeliveryView(BaseModel):
    """One message to one subscription: its latest attempt and where its retries stand."""

    id: str = Field(description="the webhook-id header: the same on every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_latency_ms: int | None = None
    last_response: str | None = Field(default=None, description="the answer's first bytes")
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class DeliveryList(BaseModel):
    data: list[DeliveryView]


class RedeliverSince(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    since: datetime


class Redelivered(BaseModel):
    redelivered: int
