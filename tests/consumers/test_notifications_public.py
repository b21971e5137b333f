"""What a subscriber receives for each internal event: the public type, the event's time, the
data it may see, and never an answer's or a prompt's text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from consumers.groups.notifications.public import PUBLIC, TOPICS, body
from schemas import jobs, usage
from schemas import topics as t
from schemas.conversations import RESPONSE_FINISHED
from schemas.envelope import Actor, RawEnvelope
from schemas.outbound_webhooks import PUBLIC_TYPES, matches


def _delivered(type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    raw = RawEnvelope(
        type=type_, tenant_id=uuid.uuid4(), actor=Actor(kind="system", id="test"),
        correlation_id=uuid.uuid4(), payload=payload,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )  # fmt: skip
    found: dict[str, Any] = orjson.loads(body(raw, PUBLIC[type_]))
    return found


def test_a_succeeded_job_is_sent_without_its_answer() -> None:
    sent = _delivered(
        jobs.JOB_SUCCEEDED,
        {"job_id": str(uuid.uuid4()), "provider": "openai", "model": "m", "text": "SECRET",
         "usage": {"input_tokens": 1, "output_tokens": 2}, "cost_usd": "0.01", "user_id": "u"},
    )  # fmt: skip
    assert sent["type"] == "job.succeeded"
    assert sent["timestamp"] == "2026-01-02T03:04:05+00:00"
    assert "text" not in sent["data"] and "user_id" not in sent["data"]
    assert sent["data"]["cost_usd"] == "0.01"


def test_a_finished_response_is_sent_without_its_output() -> None:
    sent = _delivered(
        RESPONSE_FINISHED,
        {"response_id": str(uuid.uuid4()), "status": "completed", "model": "m",
         "output": [{"type": "message", "content": [{"text": "SECRET"}]}]},
    )  # fmt: skip
    assert sent["type"] == "response.completed" and sent["data"]["status"] == "completed"
    assert b"SECRET" not in orjson.dumps(sent)


def test_a_budget_threshold_is_sent_with_its_amounts() -> None:
    crossed = usage.BudgetThresholdCrossed(
        scope="tenant", period="2026-01", threshold_pct=80, limit_usd=Decimal("10"),
        spent_usd=Decimal("8"), resets_at=datetime(2026, 2, 1, tzinfo=UTC),
    )  # fmt: skip
    sent = _delivered(usage.BUDGET_THRESHOLD_CROSSED, crossed.model_dump(mode="json"))
    assert sent["type"] == "budget.threshold_crossed"
    assert sent["data"]["threshold_pct"] == 80 and Decimal(sent["data"]["spent_usd"]) == 8


def test_every_public_type_has_a_source_and_the_group_reads_the_topics_that_exist() -> None:
    assert {p.type for p in PUBLIC.values()} == set(PUBLIC_TYPES)
    assert set(TOPICS) == {
        t.AI_JOB_LIFECYCLE.name, t.CONVERSATION_EVENTS.name, t.USAGE_BUDGET.name,
        t.NOTIFICATIONS_EVENTS.name, t.SCHEDULE_EVENTS.name, t.ALERTS_EVENTS.name,
        t.BATCH_EVENTS.name,
    }  # fmt: skip


def test_wildcards_match_by_prefix_only() -> None:
    assert matches("*", "task.due") and matches("job.*", "job.failed")
    assert not matches("job.*", "jobs.failed") and not matches("job.succeeded", "job.failed")
