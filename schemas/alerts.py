"""Alerts: a tenant's rules over what Ayush measures, and the episodes they open.

A rule has a `kind` and the parameters of that kind:

    error_rate     failed / all calls of a `model` or a `connector` over `window_s`,
                   above `threshold` (0..1) with at least `min_events` calls
    latency_p95    p95 of model-call latency (of `model`, or of every model) over
                   `window_s`, above `threshold_ms`, with at least `min_events` calls
    spend_anomaly  spend in the last hour / the average hour of the `baseline_hours`
                   before it, at least `factor`, and the last hour at least `min_usd`
    budget         a budget threshold crossed (at least `threshold_pct`) within `window_s`
    dead_letters   at least `min_events` of the tenant's events dead-lettered in `window_s`
    consumer_lag   the lag of consumer group `group` above `max_lag` (a deployment-wide
                   measure: what the evaluating process reads from Kafka)

and channels: `{"kind": "webhook"}` (the tenant's outbound-webhook subscriptions to
`alert.*`), `{"kind": "slack", "connection_id", "channel"}`, `{"kind": "email",
"connection_id", "to"}`. An episode fires once (`alert.fired`, its id the episode's) and
resolves once (`alert.resolved`).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.request import RequestModel

ALERT_FIRED = "alert.fired"
ALERT_RESOLVED = "alert.resolved"

RuleKind = Literal[
    "error_rate", "latency_p95", "spend_anomaly", "budget", "dead_letters", "consumer_lag"
]
EpisodeState = Literal["firing", "resolved"]
# An address an email channel may name: one mailbox, no spaces or line breaks.
ADDRESS = re.compile(r"[^@\s,;<>]{1,64}@[^@\s,;<>]{1,253}")

# The longest window a rule may look back (and how long observations are kept).
MAX_WINDOW_S = 7 * 24 * 3600
MAX_BASELINE_HOURS = 7 * 24 - 1

# Per kind: the parameters it needs (given, or with the default here) and those it allows.
DEFAULTS: dict[str, dict[str, Any]] = {
    "error_rate": {"window_s": 300, "min_events": 10},
    "latency_p95": {"window_s": 300, "min_events": 5},
    "spend_anomaly": {"baseline_hours": 24, "factor": 3.0, "min_usd": 1.0},
    "budget": {"window_s": 3600, "threshold_pct": 0},
    "dead_letters": {"window_s": 300, "min_events": 1},
    "consumer_lag": {},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "error_rate": ("threshold",),
    "latency_p95": ("threshold_ms",),
    "spend_anomaly": (),
    "budget": (),
    "dead_letters": (),
    "consumer_lag": ("group", "max_lag"),
}
ALLOWED: dict[str, frozenset[str]] = {
    "error_rate": frozenset({"model", "connector", "window_s", "threshold", "min_events"}),
    "latency_p95": frozenset({"model", "window_s", "threshold_ms", "min_events"}),
    "spend_anomaly": frozenset({"baseline_hours", "factor", "min_usd"}),
    "budget": frozenset({"window_s", "threshold_pct"}),
    "dead_letters": frozenset({"window_s", "min_events"}),
    "consumer_lag": frozenset({"group", "max_lag"}),
}
PARAMS = frozenset().union(*ALLOWED.values())


class Channel(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["webhook", "slack", "email"]
    connection_id: uuid.UUID | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=200)
    to: list[str] | None = Field(default=None, min_length=1, max_length=50, validate_default=True)

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for address in value or ():
            if not ADDRESS.fullmatch(address):
                raise ValueError(f"{address[:100]!r} is not an email address")
        return value


class _Params(RequestModel):
    """Every parameter of every kind, each with its bounds; which a kind takes is
    checked by `check_rule` (the error names the field)."""

    model: str | None = Field(default=None, min_length=1, max_length=200)
    connector: str | None = Field(default=None, min_length=1, max_length=64)
    window_s: int | None = Field(default=None, ge=60, le=MAX_WINDOW_S)
    threshold: float | None = Field(default=None, gt=0, le=1)
    min_events: int | None = Field(default=None, ge=1, le=1_000_000)
    threshold_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    baseline_hours: int | None = Field(default=None, ge=1, le=MAX_BASELINE_HOURS)
    factor: float | None = Field(default=None, gt=1, le=1_000_000)
    min_usd: float | None = Field(default=None, ge=0, le=1_000_000_000)
    threshold_pct: int | None = Field(default=None, ge=0, le=100)
    group: str | None = Field(default=None, min_length=1, max_length=100)
    max_lag: int | None = Field(default=None, ge=0)


class AlertRuleCreate(_Params):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: RuleKind
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel(kind="webhook")], min_length=1, max_length=10
    )
    enabled: bool = True


class AlertRuleUpdate(_Params):
    """What a PATCH may change: the name, the parameters of the rule's kind, the
    channels, `enabled`. The kind stays (a rule of another kind is a new rule)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=10)
    enabled: bool | None = None


class RuleProblem(ValueError):
    """A rule's input that does not fit its kind: `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_rule(kind: str, params: dict[str, Any], channels: list[Channel]) -> dict[str, Any]:
    """The rule's parameters, defaults filled in; RuleProblem for one that does not fit."""
    given = {k: v for k, v in params.items() if v is not None}
    for name in sorted(given):
        if name not in ALLOWED[kind]:
            raise RuleProblem(name, f"not a parameter of a {kind} rule")
    merged = {**DEFAULTS[kind], **given}
    for name in REQUIRED[kind]:
        if merged.get(name) is None:
            raise RuleProblem(name, f"required for a {kind} rule")
    if kind == "error_rate" and ("model" in merged) == ("connector" in merged):
        raise RuleProblem("model", "an error_rate rule names either a model or a connector")
    for index, channel in enumerate(channels):
        where = f"channels[{index}]"
        if channel.kind == "webhook":
            extra = [n for n in ("connection_id", "channel", "to") if getattr(channel, n)]
            if extra:
                raise RuleProblem(f"{where}.{extra[0]}", "not a field of a webhook channel")
            continue
        if channel.connection_id is None:
            raise RuleProblem(f"{where}.connection_id", f"required for a {channel.kind} channel")
        needs, other = ("channel", "to") if channel.kind == "slack" else ("to", "channel")
        if getattr(channel, needs) is None:
            raise RuleProblem(f"{where}.{needs}", f"required for a {channel.kind} channel")
        if getattr(channel, other) is not None:
            raise RuleProblem(f"{where}.{other}", f"not a field of a {channel.kind} channel")
    return merged


class AlertRuleView(BaseModel):
    id: uuid.UUID
    name: str
    kind: RuleKind
    params: dict[str, Any]
    channels: list[dict[str, Any]]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class AlertRuleList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AlertRuleView]
    first_id: uuid.UUID | None
    last_id: uuid.UUID | None
    has_more: bool


class AlertView(BaseModel):
    """One episode of a rule."""

    id: uuid.UUID
    rule_id: uuid.UUID
    state: EpisodeState
    opened_at: datetime
    resolved_at: datetime | None
    value: float
    threshold: float


class AlertList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AlertView]
    first_id: uuid.UUID | None
    last_id: uuid.UUID | None
    has_more: bool


class AlertEvent(BaseModel):
    """`alert.fired` (an episode opened) or `alert.resolved` (it ended). The fired
    event's id is the episode's; the resolved one's derives from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: uuid.UUID
    rule_id: uuid.UUID
    name: str
    kind: str
    state: EpisodeState
    params: dict[str, Any]
    value: float
    threshold: float
    opened_at: datetime
    resolved_at: datetime | None = None
