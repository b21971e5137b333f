"""The usage-projection group: daily usage totals and monthly spend, rebuilt from events alone.

Runs only in replay (`ayush replay --into-group usage-projection`): live, the
usage group writes these rows and also settles budget counters in Redis and
announces thresholds, which a replay must not do again. It adds each usage
event with the usage group's own statement (claimed by event id, so nothing
counts twice), and takes the alerts already sent from the threshold events.
"""

from __future__ import annotations

from consumers.groups.usage.group import usage_record
from infra.db import usage as usage_store
from infra.db.engine import Database
from infra.db.usage import UsageRow
from infra.kafka.group import Group
from schemas import jobs as job_events
from schemas import topics
from schemas import usage as usage_events
from schemas.envelope import Envelope

group: Group[Database] = Group(
    "usage-projection",
    [topics.USAGE_RECORDED.name, topics.USAGE_BUDGET.name],
    replay_only=True,
)


@group.on(job_events.USAGE_RECORDED, decode=usage_record)
async def on_usage(row: UsageRow, db: Database) -> None:
    await usage_store.record_batch(db, [row])


@group.on(usage_events.BUDGET_THRESHOLD_CROSSED, usage_events.BudgetThresholdCrossed)
async def on_threshold(raw: Envelope[usage_events.BudgetThresholdCrossed], db: Database) -> None:
    crossed = raw.payload
    scope_id = crossed.api_key_id if crossed.scope == "key" else raw.tenant_id
    assert scope_id is not None, "a key's threshold event names its key"
    await usage_store.mark_alerted(
        db, (crossed.scope, scope_id, crossed.period), crossed.threshold_pct
    )
