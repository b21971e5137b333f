"""Internal events -> the public payloads subscribers receive, in one table.

`{"type": "job.succeeded", "timestamp": "...", "data": {...}}`. The data carries ids,
statuses, models, usage and cost: never a secret, and never prompt or answer text (a job's
answer may be sealed with its user's key; a subscriber reads it with an API key from
GET /v1/jobs/{id}). To deliver another internal type, add a row (and its topic to the
group's topics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import alerts, batches, jobs, outbound_webhooks, usage
from schemas import topics as t
from schemas.conversations import RESPONSE_FINISHED
from schemas.envelope import Envelope

Data = Callable[[dict[str, Any]], dict[str, Any]]


def _keep(*names: str) -> Data:
    def pick(payload: dict[str, Any]) -> dict[str, Any]:
        return {name: payload.get(name) for name in names}

    return pick


def _everything(payload: dict[str, Any]) -> dict[str, Any]:
    return dict(payload)


@dataclass(frozen=True)
class Public:
    type: str  # the name subscribers see
    topic: str | None  # where the internal event arrives (None: not on this deployment yet)
    data: Data


# internal event type -> public type, its topic, what of its payload is shown
# A fired slot's fields, without its target (a job template holds prompt text).
_SLOT = ("schedule_id", "name", "user_id", "slot_at", "fired_at", "late", "missed", "task_id")

PUBLIC: dict[str, Public] = {
    jobs.JOB_SUCCEEDED: Public(
        "job.succeeded",
        t.AI_JOB_LIFECYCLE.name,
        _keep("job_id", "provider", "model", "usage", "finish_reason", "cost_usd", "cached"),
    ),
    jobs.JOB_FAILED: Public(
        "job.failed", t.AI_JOB_LIFECYCLE.name, _keep("job_id", "error", "retryable", "status")
    ),
    RESPONSE_FINISHED: Public(
        "response.completed",
        t.CONVERSATION_EVENTS.name,
        _keep(
            "response_id",
            "conversation_id",
            "status",
            "model",
            "usage",
            "error_code",
            "error_message",
        ),
    ),
    usage.BUDGET_THRESHOLD_CROSSED: Public(
        "budget.threshold_crossed",
        t.USAGE_BUDGET.name,
        _keep(
            "scope",
            "api_key_id",
            "period",
            "threshold_pct",
            "limit_usd",
            "spent_usd",
            "resets_at",
        ),
    ),
    outbound_webhooks.WEBHOOK_DISABLED: Public(
        "webhook.disabled", t.NOTIFICATIONS_EVENTS.name, _everything
    ),
    # The scheduler's: a slot without its target (a job template holds prompt text); a
    # reminder with its task's title, which is what a reminder is for.
    "schedule.fired": Public("schedule.fired", t.SCHEDULE_EVENTS.name, _keep(*_SLOT)),
    "task.due": Public("task.due", t.SCHEDULE_EVENTS.name, _everything),
    batches.BATCH_COMPLETED: Public("batch.completed", t.BATCH_EVENTS.name, _everything),
    # An alert rule's episode (schemas/alerts.py): rule, state, value, threshold, times.
    alerts.ALERT_FIRED: Public("alert.fired", t.ALERTS_EVENTS.name, _everything),
    alerts.ALERT_RESOLVED: Public("alert.resolved", t.ALERTS_EVENTS.name, _everything),
}

TOPICS: list[str] = sorted({p.topic for p in PUBLIC.values() if p.topic is not None})


def body(raw: Envelope[Any], public: Public) -> bytes:
    """The JSON a subscriber receives for `raw`: the same bytes on every attempt."""
    payload = raw.payload if isinstance(raw.payload, dict) else raw.payload.model_dump(mode="json")
    return orjson.dumps(
        {
            "type": public.type,
            "timestamp": raw.occurred_at.isoformat(),
            "data": public.data(payload),
        },
        default=str,
    )
