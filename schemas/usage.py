"""Usage accounting: budget events and the HTTP models of usage, budgets and rate limits."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.money import Usd
from schemas.request import RequestModel

BUDGET_THRESHOLD_CROSSED = "usage.budget.threshold_crossed"

BudgetScope = Literal["tenant", "key"]
GroupBy = Literal["model", "user", "key", "day"]


def current_period(now: datetime | None = None) -> str:
    """Budgets run per calendar month in UTC, named YYYY-MM."""
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def period_reset(period: str) -> datetime:
    """When a period's budget resets: the first instant of the next month, UTC."""
    year, month = (int(p) for p in period.split("-"))
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


class BudgetThresholdCrossed(BaseModel):
    """A budget's spend reached a threshold (80 or 100 percent) in a period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: BudgetScope
    api_key_id: uuid.UUID | None = None
    period: str = Field(description="YYYY-MM")
    threshold_pct: int
    limit_usd: Usd
    spent_usd: Usd
    resets_at: datetime


class BudgetIn(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    monthly_usd: Usd = Field(ge=0, max_digits=14, decimal_places=8)


class BudgetView(BaseModel):
    scope: BudgetScope
    api_key_id: uuid.UUID | None
    monthly_usd: Usd | None
    spent_usd: Usd
    reserved_usd: Usd
    period: str
    resets_at: datetime


class RateLimitIn(RequestModel):
    """A key's own limits per minute; a limit left out (or null) is the platform's default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(default=None, ge=1, le=10**9, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, le=10**15, description="tokens per minute")


class RateLimitView(BaseModel):
    api_key_id: uuid.UUID
    rpm: int = Field(description="requests per minute that apply to the key")
    tpm: int = Field(description="tokens per minute that apply to the key")
    own: RateLimitIn = Field(description="the key's own limits; null where the default applies")


class UserBudgetDefault(BaseModel):
    monthly_usd: Usd | None = Field(
        description="every user's monthly budget unless they have their own; null: none"
    )


class UserBudgetView(BaseModel):
    user_id: str
    monthly_usd: Usd | None = Field(description="the budget that applies to the user")
    own_usd: Usd | None = Field(description="the user's own budget; null: the default applies")
    spent_usd: Usd
    reserved_usd: Usd
    period: str
    resets_at: datetime


class UserRateLimitView(BaseModel):
    user_id: str | None = Field(description="null: the tenant's default for its users")
    rpm: int | None = Field(description="requests per minute that apply; null: no limit")
    tpm: int | None = Field(description="tokens per minute that apply; null: no limit")
    own: RateLimitIn = Field(description="the limits set here; null where they fall back")


class UsageRow(BaseModel):
    group: str
    events: int
    input_tokens: int
    output_tokens: int
    cost_usd: Usd


class UsageReport(BaseModel):
    from_: date = Field(serialization_alias="from")
    to: date
    group_by: GroupBy
    rows: list[UsageRow]
    total: UsageRow


class MyUsageReport(UsageReport):
    """A caller's own usage; for a signed-in user, also their monthly budget this period."""

    budget: UserBudgetView | None = None
