"""The usage group: the platform's bill, exact under redelivery, replay and crashes.

Takes its events in lists (`Batches`): a list of usage events is one transaction that
claims the event ids and adds the unclaimed ones to the daily totals and the
monthly spend. After it, the budget counters in Redis learn the new spend and
drop the reservations the ingress made for those jobs; both steps are
idempotent, so they are redone for every event of a redelivered batch.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from infra.budget_holds import BudgetHolds, Scope, Settlement
from infra.db import usage as usage_store
from infra.db.engine import Database
from infra.db.usage import NO_KEY_TEXT, Spend, UsageRow
from infra.kafka.group import Group
from infra.kafka.policies import Batches
from infra.kafka.publisher import Publisher
from infra.kafka.routes import Record
from infra.settings import Settings
from schemas import jobs as job_events
from schemas import topics
from schemas import usage as usage_events
from schemas.envelope import Actor, Envelope

SYSTEM = Actor(kind="system", id="usage")
THRESHOLDS = (80, 100)
# Alerts have ids derived from what they announce: one per budget, period and threshold.
ALERT_NAMESPACE = uuid.UUID("6f1c7a52-3b7e-4f0e-9a51-0c1f6f1d2b11")


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    holds: BudgetHolds
    publisher: Publisher


group: Group[Ports] = Group(
    "usage",
    [topics.USAGE_RECORDED.name, topics.AI_JOB_LIFECYCLE.name],
    lambda settings: Batches(settings.usage_batch_max),
)


def usage_record(record: Record) -> UsageRow:
    return usage_row(record.value or b"")


def usage_row(value: bytes) -> UsageRow:
    """The fields of a `usage.recorded` (v1) the bill needs, without building its model.

    This is the group's hot path: pydantic would build UUIDs, a datetime and a
    Decimal per event only for them to be written back as text. Postgres
    checks the strings while it copies and casts them (see infra.db.usage).
    A new version of the event must be handled here.
    """
    data = orjson.loads(value)
    if data.get("version", 1) != 1 or data["type"] != job_events.USAGE_RECORDED:
        raise ValueError(f"not a usage.recorded v1 event: {data.get('type')} {data.get('version')}")
    usage = data["payload"]
    texts = (
        data["id"],
        data["tenant_id"],
        data["occurred_at"],
        usage["job_id"],
        usage["api_key_id"] or NO_KEY_TEXT,
        usage["user_id"] or "",
        usage["model"],
    )
    for text in texts:  # loops, not all(): this runs for every event
        if type(text) is not str:
            raise ValueError(f"expected a string, got {text!r}")
    tokens = (usage["input_tokens"], usage["output_tokens"])
    for count in tokens:
        if type(count) is not int or count < 0:
            raise ValueError(f"token counts must be whole numbers: {tokens}")
    event_id, tenant_id, occurred_at, job_id, key_id, user_id, model = texts
    cost = usage.get("cost_usd", "0")
    return {
        "id": event_id,
        "tenant_id": tenant_id,
        "day": _utc_day(occurred_at),
        "job_id": job_id,
        "api_key_id": key_id,
        "user_id": user_id,
        "model": model,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cost_usd": cost if type(cost) is str else str(cost),
    }


def _utc_day(occurred_at: str) -> str:
    if occurred_at.endswith(("Z", "+00:00")):
        return occurred_at[:10]
    return datetime.fromisoformat(occurred_at).astimezone(UTC).date().isoformat()


@group.on(job_events.USAGE_RECORDED, decode=usage_record, batch=True)
async def handle_usage(rows: list[UsageRow], ports: Ports) -> None:
    await usage_store.record_batch(ports.db, rows)
    spends = await usage_store.spend_of(ports.db, usage_store.spend_keys(rows))
    await _settle(rows, spends, ports)
    await _announce_thresholds(spends, ports)


@group.on(job_events.JOB_FAILED, job_events.JobFailed, batch=True)
async def handle_job_failed(events: list[Envelope[job_events.JobFailed]], ports: Ports) -> None:
    """A failed job never reports usage: give its reservation back now, not at expiry."""
    by_tenant: dict[uuid.UUID, list[str]] = defaultdict(list)
    for event in events:
        by_tenant[event.tenant_id].append(str(event.payload.job_id))
    await ports.holds.settle_many([Settlement(t, ids, []) for t, ids in by_tenant.items()])


async def _settle(rows: list[UsageRow], spends: list[Spend], ports: Ports) -> None:
    """Drop the reservations of these jobs and teach Redis the spend Postgres now holds."""
    holds: dict[uuid.UUID, list[str]] = defaultdict(list)
    for tenant_id, job_ids in _by_tenant(rows).items():
        holds[uuid.UUID(tenant_id)] = job_ids
    spent: dict[uuid.UUID, list[tuple[Scope, str, Decimal]]] = defaultdict(list)
    for s in spends:
        spent[s.tenant_id].append((Scope(s.scope, s.scope_id), s.period, s.spent_usd))
    await ports.holds.settle_many(
        [Settlement(t, holds.get(t, []), spent.get(t, [])) for t in holds.keys() | spent.keys()]
    )


def _by_tenant(rows: list[UsageRow]) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        jobs[r["tenant_id"]].append(r["job_id"])
    return jobs


def reached(spend: Spend) -> int:
    """The highest threshold (percent) this spend has reached, 0 for none."""
    limit = spend.monthly_usd
    if limit is None:
        return 0
    if spend.spent_usd >= limit and (limit > 0 or spend.spent_usd > 0):
        return 100
    if limit > 0 and spend.spent_usd * 100 >= limit * 80:
        return 80
    return 0


async def _announce_thresholds(spends: list[Spend], ports: Ports) -> None:
    for spend in spends:
        if spend.scope == "user":
            # The event names a tenant or a key; an end user's spend is not announced
            # (the event cannot name the user, whose id is derived one way).
            continue
        level = reached(spend)
        crossed = [t for t in THRESHOLDS if spend.alerted_pct < t <= level]
        if not crossed:
            continue
        # Published before it is marked: a crash in between publishes again
        # under the same id, which consumers of the topic drop.
        await ports.publisher.publish_many(
            [(topics.USAGE_BUDGET.name, threshold_event(spend, t)) for t in crossed]
        )
        await usage_store.mark_alerted(ports.db, (spend.scope, spend.scope_id, spend.period), level)


def threshold_event(spend: Spend, pct: int) -> Envelope[Any]:
    event_id = uuid.uuid5(ALERT_NAMESPACE, f"{spend.scope}:{spend.scope_id}:{spend.period}:{pct}")
    assert spend.monthly_usd is not None
    return Envelope[Any](
        id=event_id,
        type=usage_events.BUDGET_THRESHOLD_CROSSED,
        tenant_id=spend.tenant_id,
        actor=SYSTEM,
        correlation_id=event_id,
        payload=usage_events.BudgetThresholdCrossed(
            scope="tenant" if spend.scope == "tenant" else "key",
            api_key_id=spend.scope_id if spend.scope == "key" else None,
            period=spend.period,
            threshold_pct=pct,
            limit_usd=spend.monthly_usd,
            spent_usd=spend.spent_usd,
            resets_at=usage_events.period_reset(spend.period),
        ),
    )
