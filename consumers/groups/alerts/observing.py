"""What the alerts group counts: one observation per event its rules can watch.

    ai.job.succeeded / ai.job.failed      a model call of the job's model (its latency:
                                          from the job's start to its outcome)
    integration.action.succeeded/failed   a call of the action's connector
    usage.recorded                        spend (the event's cost)
    usage.budget.threshold_crossed        a budget crossing (its percent)
    <any topic>.dlq                       a dead letter of the tenant's (when it names one)

An observation's time is its event's: a late event counts where it happened. Its id
derives from the event's (a dead letter's from its place in the dead-letter topic), so a
redelivered event counts once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from infra.db import jobs as job_store
from infra.db.alerts import Observation
from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.kafka.routes import Record
from schemas import integrations, jobs, usage
from schemas.envelope import RawEnvelope
from schemas.ids import derived_id

log = logging.getLogger(__name__)

DEAD_LETTERS = uuid.UUID("6d1f0a51-3a47-4c36-9f57-0b8e6b1f4c2e")


async def observations(record: Record, db: Database) -> list[Observation]:
    if record.topic.endswith(".dlq"):
        return _dead_letter(record)
    try:
        event = decode_raw(record.value)
    except ValueError:  # not ours to judge: the groups that handle it dead-letter it
        return []
    kind = event.type
    if kind in (jobs.JOB_SUCCEEDED, jobs.JOB_FAILED):
        return [await _model_call(event, db)]
    if kind in (integrations.ACTION_SUCCEEDED, integrations.ACTION_FAILED):
        connector = str(event.payload.get("connector") or "unknown")
        failed = kind == integrations.ACTION_FAILED
        return [_observation(event, "connector_call", connector, failed=failed)]
    if kind == jobs.USAGE_RECORDED:
        cost = Decimal(str(event.payload.get("cost_usd") or "0"))
        model = str(event.payload.get("model") or "unknown")
        return [_observation(event, "spend", model, amount=cost)]
    if kind == usage.BUDGET_THRESHOLD_CROSSED:
        pct = str(int(event.payload.get("threshold_pct") or 0))
        return [_observation(event, "budget", pct)]
    return []


def _observation(event: RawEnvelope, kind: str, target: str, **more: Any) -> Observation:
    return Observation(
        id=derived_id(event.id, "alert-observation"),
        tenant_id=event.tenant_id,
        kind=kind,
        target=target,
        at=event.occurred_at,
        **more,
    )


async def _model_call(event: RawEnvelope, db: Database) -> Observation:
    """The job's model as it was asked for (what a rule names), and its latency. The
    record is read as it is in the topic (the one route takes every record undecoded)."""
    # A user's answer is sealed whole (its payload one `sealed` member): the envelope's
    # correlation id is the job's all the same.
    job_id = uuid.UUID(str(event.payload.get("job_id") or event.correlation_id))
    found = await job_store.get_job(db, event.tenant_id, job_id)
    model = str(event.payload.get("model") or "unknown")
    latency_ms: float | None = None
    if found is not None:
        model = found.job.model
        began: datetime = found.job.started_at or found.job.created_at
        latency_ms = max(0.0, (event.occurred_at - began).total_seconds() * 1000)
    failed = event.type == jobs.JOB_FAILED
    return _observation(
        event, "model_call", model, failed=failed, latency_ms=None if failed else latency_ms
    )


def _dead_letter(record: Record) -> list[Observation]:
    try:
        event = decode_raw(record.value)
    except ValueError:  # a dead letter need not be an envelope at all (ValidationError too)
        log.info("dead letter at %s:%s names no tenant", record.topic, record.offset)
        return []
    place = f"{record.topic}:{record.partition}:{record.offset}"
    return [
        Observation(
            id=uuid.uuid5(DEAD_LETTERS, place),
            tenant_id=event.tenant_id,
            kind="dead_letter",
            target=record.topic,
            at=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
        )
    ]
