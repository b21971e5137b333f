"""API keys over HTTP: what a caller sends to create or rotate one, and what it sees.

The secret itself appears once, in `KeyCreated.key`; no other model carries it or its hash.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.request import RequestModel

KeyRole = Literal["admin", "developer", "service", "auditor"]
# A rotation's old secret keeps working this long unless the caller says otherwise.
DEFAULT_GRACE_S = 3600
MAX_GRACE_S = 30 * 24 * 3600


def network(value: str) -> str:
    """A CIDR or a single address, written the canonical way; ValueError if it is neither."""
    return str(ipaddress.ip_network(value.strip(), strict=False))


class NewKey(RequestModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str = Field(default="", max_length=200)
    role: KeyRole
    scopes: list[str] = Field(default_factory=list, max_length=100)
    expires_at: AwareDatetime | None = None
    allowed_ips: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("scopes")
    @classmethod
    def _distinct_scopes(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("expires_at must be in the future")
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            return sorted({network(v) for v in value})
        except ValueError as exc:
            raise ValueError(f"allowed_ips: not an address or CIDR ({exc})") from exc


class RotateKey(RequestModel):
    model_config = ConfigDict(extra="forbid")

    grace_s: int = Field(
        default=DEFAULT_GRACE_S,
        ge=0,
        le=MAX_GRACE_S,
        description="How long the old secret keeps working; 0 ends it now.",
    )


class KeyView(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    role: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    allowed_ips: list[str]
    revoked_at: datetime | None
    # After a rotation, until when the previous secret still works.
    previous_valid_until: datetime | None = None


class KeyCreated(KeyView):
    key: str = Field(description="The secret; shown only in this answer.")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyView]
    first_id: uuid.UUID | None
    last_id: uuid.UUID | None
    has_more: bool
