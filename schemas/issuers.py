"""HTTP bodies of the sign-in token issuers a tenant trusts (POST/GET /v1/auth/issuers)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.request import RequestModel


class IssuerCreate(RequestModel):
    """An issuer is checked with its public keys (`jwks_url`) or a shared secret
    (`hs256_secret`): exactly one of the two."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(min_length=1, max_length=500, description="the tokens' `iss`, exactly")
    audience: str = Field(
        min_length=1, max_length=500, description="the `aud` tokens for this tenant carry"
    )
    jwks_url: str | None = Field(
        default=None, max_length=2000, description="https URL of the issuer's public keys"
    )
    hs256_secret: str | None = Field(
        default=None,
        min_length=32,
        max_length=500,
        description="shared secret of HS256 tokens (sealed at rest, never shown again)",
    )
    user_claim: str = Field(
        default="sub", min_length=1, max_length=100, description="the claim naming the user"
    )
    role_claim: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="a claim whose value admin, developer or auditor gives that role;"
        " any other value (or none) is the user role",
    )


class IssuerView(BaseModel):
    id: uuid.UUID
    issuer: str
    audience: str
    kind: str = Field(description="jwks or hs256")
    jwks_url: str | None = None
    user_claim: str
    role_claim: str | None = None
    created_at: datetime


class IssuerList(BaseModel):
    data: list[IssuerView]
